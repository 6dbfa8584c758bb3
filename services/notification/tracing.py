"""Trace context kept with the work an event causes: stored as W3C headers with a message or
a journey run, continued when the sender or the runner handles it later (maybe in another
replica), so the provider call is part of the event's trace."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace

tracer = trace.get_tracer("tenpo.notification")


def current_trace() -> dict[str, str]:
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextmanager
def continued_trace(name: str, headers: Mapping[str, str]) -> Iterator[None]:
    with tracer.start_as_current_span(
        name, context=propagate.extract(dict(headers)), kind=trace.SpanKind.CLIENT
    ):
        yield
