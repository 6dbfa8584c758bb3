"""OpenTelemetry set-up: traces and metrics to OTLP when configured, console on request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from tenpo.kit.settings import ServiceSettings

_configured = False


def configure_telemetry(settings: ServiceSettings) -> None:
    """Install tracer and meter providers once per process.

    A tracer provider is installed even with no exporter: trace ids still exist, so logs,
    INTERNAL errors and event headers can be correlated on a laptop too.
    """
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create(
        {"service.name": f"tenpo-{settings.service_name}", "service.namespace": "tenpo"}
    )
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = []
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint)))
    elif settings.otel_console:
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or a fresh random id outside any span."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    import secrets

    return secrets.token_hex(16)


def captured_trace() -> otel_context.Context:
    """The caller's trace context, to be resumed by work done later on its behalf in another
    task (a batch worker, a coalesced call): a task keeps the context it was created in, so
    without this the work would carry whichever caller started the task."""
    return otel_context.get_current()


@contextmanager
def resumed_trace(captured: otel_context.Context | None) -> Iterator[None]:
    """Run a block in a ``captured_trace`` (spans, logs and outbox events made in it belong
    to that caller's trace); ``None`` leaves the current context as it is."""
    if captured is None:
        yield
        return
    token = otel_context.attach(captured)
    try:
        yield
    finally:
        otel_context.detach(token)
