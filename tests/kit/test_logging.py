"""Structured logs: one JSON object per line, with the trace id of the current span."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry import trace

from tenpo.kit.logging import JsonFormatter
from tenpo.kit.settings import ServiceSettings
from tenpo.kit.telemetry import configure_telemetry


def test_json_lines_carry_trace_ids_and_extra_fields() -> None:
    configure_telemetry(ServiceSettings(service_name="kit-test"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("catalog"))
    logger = logging.getLogger("tenpo.test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with trace.get_tracer("test").start_as_current_span("request") as span:
            logger.info("product published", extra={"product_id": "p-1"})
            expected = format(span.get_span_context().trace_id, "032x")
        logger.info("outside any span")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "product published"
    assert inside["service"] == "catalog"
    assert inside["product_id"] == "p-1"
    assert inside["trace_id"] == expected
    assert "trace_id" not in outside
