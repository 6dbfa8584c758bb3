"""Known SKUs come from the catalog's events; demo stocking follows them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest_asyncio
from google.protobuf.message import Message

from services.inventory.config import InventorySettings
from services.inventory.seed import LOCATIONS, demo_quantity, enable_demo_stocking
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.devtools.keys import DevKeys
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database, event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, expect_error, new_sku, start_inventory


@pytest_asyncio.fixture
async def strict_inventory(
    database_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[tuple[Stub, ServiceHost[InventorySettings]]]:
    async for host in start_inventory(database_url, nats_url, dev_keys, require_known_skus=True):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            yield Stub(channel), host


@pytest_asyncio.fixture
async def catalog_bus(nats_url: str) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_url, name="test-catalog")
    await bus.connect()
    await bus.ensure_stream("catalog")
    try:
        yield bus
    finally:
        await bus.close()


async def publish(bus: EventBus, message: Message) -> None:
    """As the catalog's outbox relay would."""
    event_id = str(uuid.uuid4())
    await bus.publish(
        event_subject(message),
        message.SerializeToString(),
        {
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
            OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
        },
        msg_id=event_id,
    )


def product(*skus: str, status: int = catalog_pb.PRODUCT_STATUS_PUBLISHED) -> catalog_pb.Product:
    return catalog_pb.Product(
        id=str(uuid.uuid4()),
        code=f"P-{uuid.uuid4().hex[:6]}",
        status=status,
        variants=[catalog_pb.Variant(sku=s) for s in skus],  # type: ignore[arg-type]
    )


async def eventually(check: object, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await check()  # type: ignore[operator]
            return
        except (AssertionError, grpc.aio.AioRpcError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_stock_for_unknown_skus_is_refused_until_the_catalog_announces_them(
    strict_inventory: tuple[Stub, ServiceHost[InventorySettings]],
    catalog_bus: EventBus,
    tokens: Tokens,
) -> None:
    stub, _ = strict_inventory
    sku, draft_sku = new_sku("K"), new_sku("D")
    receipt = api.AdjustStockRequest(
        sku=sku, location_id="dc-kanto", quantity=5, reason=pb.MOVEMENT_REASON_RECEIPT
    )
    await expect_error(
        stub.AdjustStock(receipt, metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SKU_UNKNOWN",
    )
    await publish(catalog_bus, catalog_events.ProductPublished(product=product(sku)))
    # Stock may arrive before launch: drafts are known too.
    await publish(
        catalog_bus,
        catalog_events.ProductUpdated(
            product=product(draft_sku, status=catalog_pb.PRODUCT_STATUS_DRAFT)
        ),
    )

    async def accepted() -> None:
        await stub.AdjustStock(receipt, metadata=tokens.staff)
        await stub.SetStockLevel(
            api.SetStockLevelRequest(sku=draft_sku, location_id="dc-kanto", on_hand=2),
            metadata=tokens.staff,
        )

    await eventually(accepted)
    await publish(catalog_bus, catalog_events.ProductArchived(product_id="x", skus=[sku]))
    await asyncio.sleep(0.3)
    # Archived SKUs stay known: returns and sell-through still move stock.
    await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku, location_id="dc-kanto", quantity=1, reason=pb.MOVEMENT_REASON_RETURN
        ),
        metadata=tokens.staff,
    )


async def test_demo_stocking_gives_new_catalog_skus_deterministic_stock_everywhere(
    strict_inventory: tuple[Stub, ServiceHost[InventorySettings]],
    catalog_bus: EventBus,
    database_url: str,
    tokens: Tokens,
) -> None:
    stub, _ = strict_inventory
    known_before = new_sku("B")
    await publish(catalog_bus, catalog_events.ProductPublished(product=product(known_before)))
    await eventually(
        lambda: stub.SetStockLevel(
            api.SetStockLevelRequest(sku=known_before, location_id="dc-kanto", safety_stock=1),
            metadata=tokens.staff,
        )
    )
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        await enable_demo_stocking(db)  # what `seed` does
    finally:
        await db.dispose()
    sku = new_sku("S")
    await publish(catalog_bus, catalog_events.ProductPublished(product=product(sku)))
    expected = {loc.id: demo_quantity(sku, loc) for loc in LOCATIONS}

    async def stocked() -> None:
        found = await stub.GetAvailability(
            api.GetAvailabilityRequest(skus=[sku]), metadata=tokens.staff
        )
        assert {lv.location_id: lv.on_hand for lv in found.availabilities[0].locations} == expected

    await eventually(stocked)
    assert expected["dc-kanto"] >= 60 and all(
        q < 12 for loc, q in expected.items() if loc.startswith(("tokyo", "osaka"))
    )
    ledger = await stub.ListMovements(api.ListMovementsRequest(sku=sku), metadata=tokens.staff)
    assert sum(m.quantity for m in ledger.movements) == sum(expected.values())
    # The SKU known before demo stocking was switched on got its stock when it was; only
    # the level that already existed (with a safety stock) was left alone.
    before = await stub.GetAvailability(
        api.GetAvailabilityRequest(skus=[known_before]), metadata=tokens.staff
    )
    levels = {lv.location_id: lv.on_hand for lv in before.availabilities[0].locations}
    assert levels["dc-kanto"] == 0 and levels["dc-kansai"] == demo_quantity(
        known_before, next(loc for loc in LOCATIONS if loc.id == "dc-kansai")
    )
