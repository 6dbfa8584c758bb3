"""Metrics: a call produces the RPC duration with its method and status, a query the SQL
duration and pool usage — read back through an in-memory metric reader."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import empty_pb2, wrappers_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy.ext.asyncio import create_async_engine

from tenpo.common.v1 import common_pb2
from tenpo.devtools.keys import ensure_dev_keys
from tenpo.kit.db import KIT_METADATA, Database
from tenpo.kit.metrics import (
    DB_CONNECTIONS_USAGE,
    DB_OPERATION_DURATION,
    MESSAGES_SENT,
    ORDERS_PLACED,
    RPC_SERVER_DURATION,
    RPC_SERVER_ERRORS,
    touchpoint,
)
from tenpo.kit.server import running
from tests.kit.sample_service import (
    SERVICE,
    SampleSettings,
    definition,
    notes,
    sample_metadata,
)


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """Every data point of metric ``name`` collected so far."""
    data = reader.get_metrics_data()
    if data is None:
        return []  # nothing recorded at all yet
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def rpc_counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    found = {}
    for point in points(reader, RPC_SERVER_DURATION):
        attributes = point.attributes
        assert attributes["rpc.system"] == "grpc"
        if attributes["rpc.service"] == SERVICE:
            found[(attributes["rpc.method"], attributes["rpc.grpc.status_code"])] = point.count
    return found


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


async def test_every_rpc_is_measured_with_method_and_status(keys: Any) -> None:
    reader = InMemoryMetricReader()
    settings = SampleSettings(
        service_name="sample",
        auth_jwks_file=keys.jwks_path,
        auth_issuer="https://auth.test.tenpo",
        auth_audience="tenpo",
    )
    provider = MeterProvider(metric_readers=[reader])
    async with (
        running(definition, settings, meter_provider=provider) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        echo = channel.unary_unary(
            f"/{SERVICE}/Echo",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        fail = channel.unary_unary(
            f"/{SERVICE}/Fail",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        boom = channel.unary_unary(
            f"/{SERVICE}/Boom",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        for _ in range(3):
            await echo(wrappers_pb2.StringValue(value="hi"))
        with pytest.raises(grpc.aio.AioRpcError):
            await fail(wrappers_pb2.StringValue(value="x"))
        with pytest.raises(grpc.aio.AioRpcError):
            await fail(wrappers_pb2.StringValue(value="missing"))
        with pytest.raises(grpc.aio.AioRpcError):
            await boom(empty_pb2.Empty())
    counts = rpc_counts(reader)
    assert counts == {
        ("Echo", "OK"): 3,
        ("Fail", "INVALID_ARGUMENT"): 1,
        ("Fail", "NOT_FOUND"): 1,
        ("Boom", "INTERNAL"): 1,
    }
    (echo_point,) = [
        p for p in points(reader, RPC_SERVER_DURATION) if p.attributes["rpc.method"] == "Echo"
    ]
    assert echo_point.sum > 0
    # The failures again, by their reason: what the status code alone does not tell.
    errors = {
        (p.attributes["rpc.method"], p.attributes["error.type"]): p.value
        for p in points(reader, RPC_SERVER_ERRORS)
        if p.attributes["rpc.service"] == SERVICE
    }
    assert errors == {
        ("Fail", "QUANTITY_INVALID"): 1,
        ("Fail", "NOTE_NOT_FOUND"): 1,
        ("Boom", "INTERNAL"): 1,
    }


async def test_queries_and_the_pool_are_measured(keys: Any, database_url: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(sample_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)
    await engine.dispose()
    reader = InMemoryMetricReader()
    settings = SampleSettings(
        service_name="sample",
        database_url=database_url,
        auth_jwks_file=keys.jwks_path,
        auth_issuer="https://auth.test.tenpo",
        auth_audience="tenpo",
    )
    with_db = dataclasses.replace(definition, uses_database=True)
    provider = MeterProvider(metric_readers=[reader])
    async with (
        running(with_db, settings, meter_provider=provider) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        count = channel.unary_unary(
            f"/{SERVICE}/CountNotes",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=wrappers_pb2.Int64Value.FromString,
        )
        for _ in range(2):
            assert (await count(empty_pb2.Empty())).value == 0
        database = database_url.rsplit("/", 1)[1]
        selects = [
            p
            for p in points(reader, DB_OPERATION_DURATION)
            if p.attributes["db.operation.name"] == "SELECT"
        ]
        assert [p.attributes["db.namespace"] for p in selects] == [database]
        assert selects[0].attributes["db.system"] == "postgresql"
        assert selects[0].count >= 2
        # Pool usage from the SQLAlchemy instrumentation: the connections are back, idle.
        usage = {p.attributes["state"]: p.value for p in points(reader, DB_CONNECTIONS_USAGE)}
        assert usage["used"] == 0
        assert usage["idle"] >= 1
    assert rpc_counts(reader)[("CountNotes", "OK")] == 2


async def test_statements_straight_on_asyncpg_are_measured_too(database_url: str) -> None:
    """The hot paths' raw asyncpg statements (DriverUnitOfWork, driver_connection) bypass
    SQLAlchemy's cursor events: asyncpg's query logger records them, with BEGIN and
    COMMIT, and a failing one with its error type."""
    reader = InMemoryMetricReader()
    db = Database(database_url, meter_provider=MeterProvider(metric_readers=[reader]))

    def operations() -> dict[tuple[str, str], int]:
        return {
            (p.attributes["db.operation.name"], p.attributes.get("error.type", "")): p.count
            for p in points(reader, DB_OPERATION_DURATION)
        }

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(sample_metadata.create_all)
        before = operations()
        async with db.driver_unit_of_work() as uow:
            await uow.connection.execute("INSERT INTO notes (text) VALUES ($1)", "a")
            assert await uow.connection.fetchval("SELECT count(*) FROM notes") == 1
            await uow.commit()
        async with db.driver_connection() as connection:
            assert await connection.fetchval("SELECT count(*) FROM notes") == 1
            with pytest.raises(asyncpg.UndefinedTableError):
                await connection.fetchval("SELECT count(*) FROM no_such_table")
        # A statement through SQLAlchemy is counted once, not once per layer.
        async with db.unit_of_work() as uow:
            await uow.session.execute(sa.select(sa.func.count()).select_from(notes))
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers on the next loop turn
        after = operations()
    finally:
        await db.dispose()

    def grew(key: tuple[str, str]) -> int:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("INSERT", "")) == 1
    assert grew(("SELECT", "")) == 3  # the unit of work's, the connection's, SQLAlchemy's
    assert grew(("SELECT", "UndefinedTableError")) == 1
    assert grew(("BEGIN", "")) == 2  # the driver unit of work's, SQLAlchemy's
    assert grew(("COMMIT", "")) == 1
    assert grew(("ROLLBACK", "")) == 1  # the SQLAlchemy unit of work, never committed
    assert {p.attributes["db.namespace"] for p in points(reader, DB_OPERATION_DURATION)} == {
        database_url.rsplit("/", 1)[1]
    }


async def test_a_service_measures_the_lag_of_each_of_its_consumers(
    keys: Any, database_url: str, nats_url: str
) -> None:
    """The host hands its meter to the consumers it runs: each durable's lag is recorded as
    soon as it runs, without anyone asking."""
    from tenpo.kit.events import CONSUMER_PENDING, Subscription
    from tenpo.kit.server import Runtime

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(KIT_METADATA.create_all)
    await engine.dispose()
    durable = f"lag-{uuid.uuid4().hex[:8]}"
    source = f"src{uuid.uuid4().hex[:8]}"

    async def handle(uow: Any, event: Any) -> None:
        return None

    async def build(runtime: Runtime[SampleSettings]) -> None:
        await definition.build(runtime)
        runtime.subscribe(Subscription(durable, source, {wrappers_pb2.StringValue: handle}))

    reader = InMemoryMetricReader()
    settings = SampleSettings(
        service_name="sample",
        database_url=database_url,
        nats_url=nats_url,
        auth_jwks_file=keys.jwks_path,
        auth_issuer="https://auth.test.tenpo",
        auth_audience="tenpo",
    )
    consuming = dataclasses.replace(definition, uses_database=True, uses_events=True, build=build)
    async with running(consuming, settings, meter_provider=MeterProvider(metric_readers=[reader])):
        deadline = asyncio.get_running_loop().time() + 30
        # Nothing at all is collected until the first measurement: None, not empty.
        while reader.get_metrics_data() is None or not points(reader, CONSUMER_PENDING):
            assert asyncio.get_running_loop().time() < deadline, "no lag recorded"
            await asyncio.sleep(0.1)
    (point,) = points(reader, CONSUMER_PENDING)
    assert point.attributes["messaging.consumer.group.name"] == durable
    assert point.attributes["messaging.destination.name"] == f"TENPO_{source.upper()}"
    assert point.value == 0


async def test_business_counters_count_what_a_unit_of_work_commits(database_url: str) -> None:
    reader = InMemoryMetricReader()
    db = Database(database_url, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        async with db.unit_of_work() as uow:
            uow.count(ORDERS_PLACED, channel=touchpoint(common_pb2.CHANNEL_KIOSK))
            uow.count(ORDERS_PLACED, 2, channel="WEB")
            # Nothing is counted before the commit.
            assert points(reader, ORDERS_PLACED.name) == []
            await uow.commit()
        async with db.unit_of_work() as uow:
            uow.count(ORDERS_PLACED, 5, channel="WEB")
            # rolled back: never committed
        async with db.driver_unit_of_work() as driver:
            driver.count(MESSAGES_SENT, channel="SMS")
            await driver.commit()
        async with db.driver_unit_of_work() as driver:
            driver.count(MESSAGES_SENT, channel="SMS")
            # left without a commit: rolled back
    finally:
        await db.dispose()
    placed = {p.attributes["channel"]: p.value for p in points(reader, ORDERS_PLACED.name)}
    assert placed == {"KIOSK": 1, "WEB": 2}
    sent = {p.attributes["channel"]: p.value for p in points(reader, MESSAGES_SENT.name)}
    assert sent == {"SMS": 1}


def test_a_touchpoint_attribute_is_the_channel_name() -> None:
    assert touchpoint(common_pb2.CHANNEL_SMART_MIRROR) == "SMART_MIRROR"
    assert touchpoint(0) == "UNSPECIFIED"
    assert touchpoint(999) == "UNKNOWN"
