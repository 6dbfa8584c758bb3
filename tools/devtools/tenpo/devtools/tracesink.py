"""A local OpenTelemetry sink for `make run` (``TENPO_STACK_TRACES=1``): an OTLP/gRPC
receiver, as an OpenTelemetry Collector would be, that keeps every span as one JSON line
in ``.data/traces/spans.jsonl`` (metrics are accepted and dropped), and a viewer that prints
a trace as a tree across services:

    python -m tenpo.devtools.tracesink list            # the latest traces
    python -m tenpo.devtools.tracesink show <trace id> # one trace, every service's spans

Development only: no retention beyond the file, no UI. Point the services at a real
Collector or Jaeger (``TENPO_OTEL_EXPORTER_OTLP_ENDPOINT``) for anything more."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TextIO

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SPANS_FILE = "spans.jsonl"
#: OTLP span kinds, as the viewer names them.
_KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "", 1: "ok", 2: "ERROR"}


def span_records(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[dict[str, Any]]:
    """One flat record per span, with the service that sent it."""
    for resource_spans in request.resource_spans:
        service = next(
            (
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            ),
            "?",
        )
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_id": span.parent_span_id.hex(),
                    "links": [link.trace_id.hex() for link in span.links],
                    "service": service,
                    "name": span.name,
                    "kind": _KINDS.get(span.kind, ""),
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "status": _STATUS.get(span.status.code, ""),
                }


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: TraceSink) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.keep(span_records(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        # Accepted so the services' exporters do not log failures; metrics belong in a
        # Prometheus behind a real Collector (deploy/components/monitoring).
        return metrics_service_pb2.ExportMetricsServiceResponse()


class TraceSink:
    """The OTLP/gRPC receiver, on a thread pool of its own (it is not on any service's
    event loop)."""

    def __init__(self, host: str, port: int, directory: Path) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def spans_file(self) -> Path:
        return self.directory / SPANS_FILE

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def keep(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._lock, self.spans_file.open("a", encoding="utf-8") as out:
            out.write(lines)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(), server)
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = bound
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    spans = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            spans.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return spans


def list_traces(spans: list[dict[str, Any]], out: TextIO, limit: int = 20) -> None:
    """The latest traces: start, services, span count, root span."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)
    latest = sorted(by_trace.items(), key=lambda t: min(s["start"] for s in t[1]))[-limit:]
    for trace_id, members in latest:
        root = min(members, key=lambda s: s["start"])
        services = sorted({s["service"].removeprefix("tenpo-") for s in members})
        out.write(
            f"{trace_id}  {len(members):>4} spans  {','.join(services):<40}  {root['name']}\n"
        )


def show_trace(spans: list[dict[str, Any]], trace_id: str, out: TextIO) -> int:
    """One trace as a tree (children under their parent, by start time), with each span's
    service and duration; spans of other traces that link to it (a batch serving several
    calls) are listed after it."""
    members = [s for s in spans if s["trace_id"] == trace_id]
    if not members:
        out.write(f"no spans of trace {trace_id}\n")
        return 1
    known = {s["span_id"] for s in members}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in members:
        parent = span["parent_id"] if span["parent_id"] in known else ""
        children[parent].append(span)
    start = min(s["start"] for s in members)

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            offset = (span["start"] - start) / 1e6
            duration = (span["end"] - span["start"]) / 1e6
            flags = " ".join(x for x in (span["kind"], span["status"]) if x)
            out.write(
                f"{offset:9.1f} ms {duration:8.1f} ms  {'  ' * depth}"
                f"{span['service'].removeprefix('tenpo-')}: {span['name']}"
                f"{f'  [{flags}]' if flags else ''}\n"
            )
            walk(span["span_id"], depth + 1)

    walk("", 0)
    linked = [s for s in spans if trace_id in s.get("links", [])]
    for span in linked:
        out.write(f"  linked from trace {span['trace_id']}: {span['service']}: {span['name']}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenpo.devtools.tracesink")
    parser.add_argument("--data-dir", default=".data", help="the stack's data directory")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the latest traces")
    show = commands.add_parser("show", help="one trace as a tree")
    show.add_argument("trace_id")
    args = parser.parse_args(argv)
    spans = read_spans(Path(args.data_dir) / "traces" / SPANS_FILE)
    if args.command == "list":
        list_traces(spans, sys.stdout)
        return 0
    return show_trace(spans, args.trace_id.lower(), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
