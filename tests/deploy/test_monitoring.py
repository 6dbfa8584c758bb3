"""The monitoring component: the alert rules cover what a platform team must be woken for,
each with a runbook that exists, and every metric and label the alerts and the dashboard
query is one the code really exports — read back from a running service, its database, its
outbox relay and a durable consumer against real PostgreSQL and NATS, then named as the
OpenTelemetry Collector's Prometheus exporters name it."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, wrappers_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum
from sqlalchemy.ext.asyncio import create_async_engine

from tenpo.devtools.keys import ensure_dev_keys
from tenpo.kit import metrics as metrics_module
from tenpo.kit.db import KIT_METADATA, Database
from tenpo.kit.events import Consumer, EventBus, OutboxRelay, Subscription, stream_name
from tenpo.kit.metrics import BUSINESS_COUNTERS, HttpMetrics
from tenpo.kit.server import running
from tests.deploy.test_manifests import DEPLOY, ROOT, Manifest, of_kind, render
from tests.kit.sample_service import SERVICE, SampleSettings, definition, sample_metadata

OPERATIONS = ROOT / "docs" / "operations.md"
#: What the issue asks alerts for, by the alert that answers it.
REQUIRED_ALERTS = {
    "TenpoHighErrorRatio": "error ratio",
    "TenpoHighLatencyP99": "p99 latency",
    "TenpoConsumerLag": "consumer lag",
    "TenpoOutboxBacklogOld": "outbox backlog age",
    "TenpoDatabaseUnavailable": "database unavailable",
    "TenpoPodRestarting": "pod restarts",
    "TenpoPodNotReady": "pods not ready",
}
#: Metrics that come from kube-state-metrics, not from Tenpo, with the labels used.
KUBE_STATE_METRICS = {"kube_pod_container_status_restarts_total", "kube_pod_status_ready"}
KUBE_LABELS = {"namespace", "pod", "container", "condition"}
#: Labels Prometheus or the collector adds to every series (job from service.name).
SERIES_LABELS = {"job", "instance", "le"}
#: PromQL's own words: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "clamp_min", "clamp_max", "abs", "absent", "label_values",
}  # fmt: skip
#: UCUM units the Collector's translator spells out (the ones Tenpo's metrics use).
UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "By": "bytes", "1": ""}


# --- the rules and the dashboard ------------------------------------------------------------


@functools.cache
def _rendered() -> tuple[Manifest, ...]:
    """The base with the monitoring component, as an overlay would render it."""
    with tempfile.TemporaryDirectory() as directory:
        relative = Path(os.path.relpath(DEPLOY, directory))
        Path(directory, "kustomization.yaml").write_text(
            f"resources:\n  - {relative / 'base'}\n"
            f"components:\n  - {relative / 'components' / 'monitoring'}\n"
        )
        return tuple(render(Path(directory)))


def rules() -> dict[str, Manifest]:
    (rule,) = of_kind(list(_rendered()), "PrometheusRule").values()
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def dashboard() -> dict[str, Any]:
    (config_map,) = [
        m
        for m in _rendered()
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "tenpo-grafana-dashboard"
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    document: dict[str, Any] = json.loads(config_map["data"]["tenpo.json"])
    return document


def dashboard_queries() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]


def alert_queries() -> list[str]:
    return [rule["expr"] for rule in rules().values()]


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # strings hold no names
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return words - PROMQL_WORDS


def label_names(expression: str) -> set[str]:
    """The labels an expression matches on or groups by."""
    found = set(re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"', expression))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expression):
        found |= {label.strip() for label in grouping.split(",") if label.strip()}
    return found


def test_metric_and_label_names_are_read_from_promql() -> None:
    expression = (
        'sum by (job, le) (rate(rpc_x_bucket{rpc_method!~"Watch.*"}[5m])) / '
        'max without(pod) (up{a="b"}) and on(job) kube_y > 0'
    )
    assert metric_names(expression) == {"rpc_x_bucket", "up", "kube_y"}
    assert label_names(expression) == {"job", "le", "rpc_method", "pod", "a"}


def test_the_alerts_cover_what_a_platform_team_must_be_woken_for() -> None:
    found = rules()
    assert set(REQUIRED_ALERTS) <= set(found), set(REQUIRED_ALERTS) - set(found)
    for name, rule in found.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name


def test_every_alert_has_a_runbook_in_the_operations_guide() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    headings = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if re.match(r"#{1,6} ", line)
    }
    for name, rule in rules().items():
        document, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert document == "docs/operations.md", name
        assert anchor in headings, f"{name}: no heading #{anchor} in docs/operations.md"


def test_the_dashboard_is_grafana_json_with_queries() -> None:
    document = dashboard()
    assert document["uid"] == "tenpo-overview"
    queries = dashboard_queries()
    assert len(queries) >= 10
    # Every alert's metric is on the dashboard, so whoever is paged sees its history.
    on_dashboard = set().union(*(metric_names(q) for q in queries))
    for name, rule in rules().items():
        assert metric_names(rule["expr"]) <= on_dashboard, name


# --- what the code exports ------------------------------------------------------------------


def prometheus_names(metric: Any) -> set[str]:
    """The series an OpenTelemetry metric becomes behind the Collector's Prometheus
    exporters (metric suffixes on, their default): dots to underscores, the unit spelt out
    and appended ({annotations} dropped), ``_total`` on monotonic sums, histograms as
    ``_bucket``, ``_sum`` and ``_count``."""
    name = re.sub(r"[^A-Za-z0-9_:]", "_", metric.name)
    unit = re.sub(r"\{[^}]*\}", "", metric.unit or "")
    unit = UNIT_WORDS.get(unit, unit)
    if unit and not name.endswith(f"_{unit}"):
        name = f"{name}_{unit}"
    data = metric.data
    if isinstance(data, Histogram):
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if isinstance(data, Sum) and data.is_monotonic:
        return {f"{name}_total"}
    return {name}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.integration
async def test_every_queried_metric_and_label_is_exported(
    keys: Any, database_url: str, nats_url: str
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(sample_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)
    await engine.dispose()
    settings = SampleSettings(
        service_name="sample",
        database_url=database_url,
        auth_jwks_file=keys.jwks_path,
        auth_issuer="https://auth.test.tenpo",
        auth_audience="tenpo",
    )
    with_db = dataclasses.replace(definition, uses_database=True)
    # A service answering calls (one failing), on its database (SQLAlchemy and asyncpg).
    async with (
        running(with_db, settings, meter_provider=provider) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        for method in ("CountNotes", "CountNotesDriver"):
            call = channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=wrappers_pb2.Int64Value.FromString,
            )
            await call(empty_pb2.Empty())
        fail = channel.unary_unary(
            f"/{SERVICE}/Fail",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await fail(wrappers_pb2.StringValue(value="missing"))
    # The gateway's HTTP side, an outbox relay and a durable consumer.
    HttpMetrics(provider).record("GET", "GET /healthz", 200, 0.001)
    service = f"mon{uuid.uuid4().hex[:10]}"
    db = Database(database_url, meter_provider=provider)
    bus = EventBus(nats_url)
    try:
        await bus.connect()
        await bus.ensure_stream(service)
        async with db.unit_of_work() as uow:
            uow.add_event(wrappers_pb2.StringValue(value="x"), service=service)
            # The business counters, as the services' use cases count them: through a
            # unit of work, at commit.
            for counter in BUSINESS_COUNTERS:
                uow.count(counter, 2, channel="WEB", reason="INSUFFICIENT_STOCK")
            await uow.commit()
        relay = OutboxRelay(db, bus, meter_provider=provider)
        await relay.measure_backlog()
        await relay.publish_pending()
        subscription = Subscription(
            durable=f"d{service}",
            source_service=service,
            handlers={wrappers_pb2.StringValue: _noop},
        )
        consumer = Consumer(db, bus, subscription, meter_provider=provider)
        await bus.js.add_consumer(stream_name(service), consumer.config())
        await consumer.measure_lag()
    finally:
        await bus.close()
        await db.dispose()

    data = reader.get_metrics_data()
    assert data is not None
    exported: set[str] = set()
    labels = set(SERIES_LABELS)
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                exported |= prometheus_names(metric)
                for point in metric.data.data_points:
                    labels |= {re.sub(r"[^A-Za-z0-9_]", "_", key) for key in point.attributes}
    queries = alert_queries() + dashboard_queries()
    queried = set().union(*(metric_names(q) for q in queries))
    unknown = queried - exported - KUBE_STATE_METRICS
    assert not unknown, (
        f"queried but never exported: {sorted(unknown)}; exported: {sorted(exported)}"
    )
    # Every business counter is on the dashboard.
    for counter in BUSINESS_COUNTERS:
        (series,) = {n for n in exported if n.startswith(counter.name.replace(".", "_"))}
        assert series in queried, f"{counter.name} ({series}) is on no dashboard panel"
    # The kube-state-metrics allowance is used, not a loophole left open.
    assert queried >= KUBE_STATE_METRICS
    unknown_labels = set().union(*(label_names(q) for q in queries)) - labels - KUBE_LABELS
    assert not unknown_labels, f"labels never exported: {sorted(unknown_labels)}"


async def _noop(uow: Any, event: Any) -> None:
    return None


def test_every_business_counter_is_counted_by_a_use_case() -> None:
    """Each counter the dashboard shows is counted somewhere in a service's use case layer
    (where the decision is taken and committed), not in a servicer or store."""
    sources = {
        path: path.read_text(encoding="utf-8")
        for path in (ROOT / "services").glob("*/usecases/*.py")
    }
    names = {
        "ORDERS_PLACED": "order",
        "CHECKOUTS_FAILED": "order",
        "RESERVATIONS_REFUSED": "inventory",
        "MESSAGES_SENT": "notification",
        "POINTS_EARNED": "customer",
    }
    assert set(names) == {
        name for name, value in vars(metrics_module).items() if value in BUSINESS_COUNTERS
    }
    for name, service in names.items():
        users = {p.parts[-3] for p, text in sources.items() if f"uow.count({name}" in text}
        assert users == {service}, (name, users)
