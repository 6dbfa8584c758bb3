"""The local trace sink of `make run` (TENPO_STACK_TRACES=1): real OTLP/gRPC exports from
two services' tracer providers land in its file, and the viewer prints one trace across
both services as a tree."""

from __future__ import annotations

import io
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tenpo.devtools.stack.config import StackConfig
from tenpo.devtools.tracesink import TraceSink, list_traces, read_spans, show_trace


def provider(service: str, endpoint: str) -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def test_spans_from_two_services_make_one_trace(tmp_path: Path) -> None:
    sink = TraceSink("127.0.0.1", 0, tmp_path / "traces")
    sink.start()
    try:
        gateway = provider("tenpo-gateway", sink.endpoint)
        order = provider("tenpo-order", sink.endpoint)
        # The order service continues the gateway's trace (as gRPC metadata carries it).
        with (
            gateway.get_tracer("t").start_as_current_span("POST /v1/orders") as root,
            order.get_tracer("t").start_as_current_span("PlaceOrder", kind=trace.SpanKind.SERVER),
        ):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
        gateway.shutdown()
        order.shutdown()
    finally:
        sink.stop()
    spans = read_spans(sink.spans_file)
    assert {(s["service"], s["name"]) for s in spans} == {
        ("tenpo-gateway", "POST /v1/orders"),
        ("tenpo-order", "PlaceOrder"),
    }
    assert {s["trace_id"] for s in spans} == {trace_id}
    shown = io.StringIO()
    assert show_trace(spans, trace_id, shown) == 0
    lines = shown.getvalue().splitlines()
    assert "gateway: POST /v1/orders" in lines[0]
    # The order's span is indented under the gateway's.
    assert "  order: PlaceOrder  [server]" in lines[1]
    listed = io.StringIO()
    list_traces(spans, listed)
    assert listed.getvalue().startswith(trace_id)
    assert "gateway,order" in listed.getvalue()
    missing = io.StringIO()
    assert show_trace(spans, "0" * 32, missing) == 1


def test_the_stack_starts_the_sink_only_when_asked_and_no_endpoint_is_set() -> None:
    assert StackConfig.from_env({"TENPO_STACK_TRACES": "1"}).traces
    assert not StackConfig.from_env({}).traces
    assert not StackConfig.from_env(
        {"TENPO_STACK_TRACES": "1", "TENPO_OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    ).traces
