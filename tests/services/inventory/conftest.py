"""Inventory test fixtures: a migrated, running inventory per test (or per module) with the
demo network of locations, and helpers to call it."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from services.inventory.app import definition
from services.inventory.config import InventorySettings
from services.inventory.seed import LOCATIONS
from services.inventory.store import LocationStore
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit import migrations
from tenpo.kit.db import Database
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import Tokens, auth_settings

Stub = inventory_service_pb2_grpc.InventoryServiceStub


async def add_demo_locations(database_url: str) -> None:
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            for location in LOCATIONS:
                await LocationStore(uow.session).insert(location)
            await uow.commit()
    finally:
        await db.dispose()


async def start_inventory(
    database_url: str, nats_url: str, dev_keys: DevKeys, **overrides: Any
) -> AsyncIterator[ServiceHost[InventorySettings]]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    await add_demo_locations(database_url)
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "grpc_port": 0,
        "database_pool_size": 20,
        "require_known_skus": False,
        "catalog_consumer": f"inventory-test-{uuid.uuid4().hex[:8]}",
        "expiry_interval_seconds": 0.2,
        "shutdown_grace_seconds": 1.0,
        **auth_settings(dev_keys),
    }
    settings = InventorySettings(**(values | overrides))
    async with running(definition, settings) as host:
        yield host


@pytest_asyncio.fixture
async def inventory_host(
    database_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[ServiceHost[InventorySettings]]:
    async for host in start_inventory(database_url, nats_url, dev_keys):
        yield host


@pytest_asyncio.fixture
async def inventory(inventory_host: ServiceHost[InventorySettings]) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{inventory_host.port}") as channel:
        yield Stub(channel)


@pytest_asyncio.fixture(scope="module")
async def shared_inventory(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[tuple[Stub, ServiceHost[InventorySettings], str]]:
    """One inventory per module (tests use their own SKUs): stub, host, database URL."""
    name = f"test_inv_{uuid.uuid4().hex[:12]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        async for host in start_inventory(url, nats_url, dev_keys):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
                yield Stub(channel), host, url
    finally:
        drop_database(postgres_admin_url, name)


@pytest_asyncio.fixture
async def replicas(
    inventory_host: ServiceHost[InventorySettings],
    database_url: str,
    nats_url: str,
    dev_keys: DevKeys,
) -> AsyncIterator[list[Stub]]:
    """Two service replicas on the same database, one channel each."""
    async for second in start_inventory(database_url, nats_url, dev_keys):
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{inventory_host.port}") as one,
            grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as two,
        ):
            yield [Stub(one), Stub(two)]


def new_sku(prefix: str = "T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def receive(
    stub: Stub, tokens: Tokens, sku: str, location_id: str, quantity: int
) -> api.AdjustStockResponse:
    return await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku,
            location_id=location_id,
            quantity=quantity,
            reason=pb.MOVEMENT_REASON_RECEIPT,
        ),
        metadata=tokens.staff,
    )


async def atp(stub: Stub, sku: str, location_id: str) -> int:
    found = await stub.GetAvailability(
        api.GetAvailabilityRequest(skus=[sku], location_ids=[location_id])
    )
    levels = found.availabilities[0].locations
    return levels[0].available_to_promise if levels else 0


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    if reason is not None:
        assert decode_error(caught.value).reason == reason
