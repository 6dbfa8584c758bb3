"""A real service (inventory) under its dependencies' faults, each on a private server this
test stops and starts: NATS restarted while writes go on (they succeed, the outbox keeps
the events and catches up, each event reaches the stream once), then PostgreSQL stopped
(calls answer UNAVAILABLE with reason DATABASE_UNAVAILABLE, counted by reason in the
metrics, never INTERNAL) and started again (calls succeed; every write that succeeded
counted once)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.inventory.app import definition
from services.inventory.config import InventorySettings
from tenpo.devtools.keys import DevKeys, ensure_dev_keys
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres, free_port
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit import migrations
from tenpo.kit.events import EVENT_ID_HEADER, EventBus, stream_name
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.metrics import RPC_SERVER_ERRORS
from tenpo.kit.server import running
from tests.conftest import scratch_dir
from tests.services.conftest import Tokens, auth_settings
from tests.services.inventory.conftest import add_demo_locations

pytestmark = pytest.mark.integration

LOCATION = "tokyo-shibuya"


@pytest.fixture(scope="module")
def dev_keys() -> Iterator[DevKeys]:
    with scratch_dir("tenpo-test-keys-") as root:
        yield ensure_dev_keys(root)


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    with scratch_dir("tenpo-test-pg-platform-") as root:
        server = EmbeddedPostgres(root / "data", free_port(), durable=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest_asyncio.fixture
async def database_on_private_postgres(private_postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    url = private_postgres.ensure_database(
        f"inventory_{secrets.token_hex(6)}", secrets.token_urlsafe(18)
    )
    await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
    await add_demo_locations(url)
    yield url


async def _stream_event_ids(nats_url: str) -> list[str]:
    bus = EventBus(nats_url)
    await bus.connect()
    try:
        stream = stream_name("inventory")
        total = (await bus.js.stream_info(stream)).state.messages
        pull = await bus.js.pull_subscribe(
            "tenpo.inventory.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        ids: list[str] = []
        while len(ids) < total:
            for message in await pull.fetch(200, timeout=10):
                ids.append((message.headers or {})[EVENT_ID_HEADER])
                await message.ack()
        return ids
    finally:
        await bus.close()


async def _eventually(check: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_inventory_rides_out_a_nats_restart_and_a_postgres_restart(
    private_postgres: EmbeddedPostgres,
    database_on_private_postgres: str,
    nats_factory: Callable[[], EmbeddedNats],
    dev_keys: DevKeys,
) -> None:
    broker = nats_factory()
    reader = InMemoryMetricReader()
    settings = InventorySettings(
        database_url=database_on_private_postgres,
        nats_url=broker.url,
        grpc_port=0,
        require_known_skus=False,
        catalog_consumer=f"inventory-test-{uuid.uuid4().hex[:8]}",
        shutdown_grace_seconds=1.0,
        **auth_settings(dev_keys),  # type: ignore[arg-type]
    )
    staff = Tokens(dev_keys).staff
    sku = f"FAULT-{uuid.uuid4().hex[:6]}"
    adjusted = reserved = 0
    async with (
        running(definition, settings, MeterProvider(metric_readers=[reader])) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)

        async def adjust() -> None:
            """Two units in: a SQLAlchemy unit of work."""
            nonlocal adjusted
            await stub.AdjustStock(
                api.AdjustStockRequest(
                    sku=sku,
                    location_id=LOCATION,
                    quantity=2,
                    reason=pb.MOVEMENT_REASON_RECEIPT,
                    request_id=uuid.uuid4().hex,
                ),
                metadata=staff,
                timeout=20,
            )
            adjusted += 1

        async def reserve() -> None:
            """One unit held: the reservation batcher's raw asyncpg path."""
            nonlocal reserved
            await stub.ReserveStock(
                api.ReserveStockRequest(
                    owner=f"carts/{uuid.uuid4().hex}",
                    lines=[pb.StockLine(sku=sku, quantity=1, location_id=LOCATION)],
                    request_id=uuid.uuid4().hex,
                ),
                metadata=staff,
                timeout=20,
            )
            reserved += 1

        async def write() -> None:
            await adjust()
            await reserve()

        async def pending_events() -> int:
            async with host.runtime.db.driver_connection() as connection:  # type: ignore[union-attr]
                return int(
                    await connection.fetchval(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    )
                )

        async def outbox_ids() -> set[str]:
            async with host.runtime.db.driver_connection() as connection:  # type: ignore[union-attr]
                return {str(r["id"]) for r in await connection.fetch("SELECT id FROM outbox")}

        for _ in range(3):
            await write()
        await _eventually(lambda: _zero(pending_events))

        # NATS goes away: writes still succeed, their events wait in the outbox.
        await asyncio.to_thread(broker.stop)
        for _ in range(3):
            await write()
        assert await pending_events() > 0
        await asyncio.to_thread(broker.start)
        await _eventually(lambda: _zero(pending_events))
        stream = await _stream_event_ids(broker.url)
        assert len(stream) == len(set(stream)), "an event reached the stream twice"
        assert set(stream) == await outbox_ids(), "an event never reached the stream"

        # PostgreSQL goes away: every call is UNAVAILABLE with the database's reason.
        await asyncio.to_thread(private_postgres.stop)
        try:
            for call in (adjust, reserve, adjust, reserve):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call()
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value.details()
                assert decode_error(caught.value).reason == "DATABASE_UNAVAILABLE"
        finally:
            await asyncio.to_thread(private_postgres.start)
        failures = {
            (p.attributes["rpc.method"], p.attributes["error.type"]): p.value
            for p in _points(reader, RPC_SERVER_ERRORS)
        }
        assert failures == {
            ("AdjustStock", "DATABASE_UNAVAILABLE"): 2,
            ("ReserveStock", "DATABASE_UNAVAILABLE"): 2,
        }
        # Back: calls succeed again (the first ones included: dead connections are
        # replaced at checkout), and the level counts each successful write once.
        for _ in range(2):
            await write()
        levels = (
            await stub.ListStockLevels(
                api.ListStockLevelsRequest(location_id=LOCATION, page_size=1000),
                metadata=staff,
                timeout=20,
            )
        ).stock_levels
        (level,) = [level for level in levels if level.sku == sku]
        assert level.on_hand == 2 * adjusted
        assert level.reserved == reserved
        await _eventually(lambda: _zero(pending_events))
    print(
        f"\nfaults: {adjusted} adjustments, {reserved} reservations; {len(stream)} events "
        "relayed once each across the NATS restart; 4 calls UNAVAILABLE while PostgreSQL was down"
    )


async def _zero(count: Callable[[], Any]) -> bool:
    return int(await count()) == 0


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]
