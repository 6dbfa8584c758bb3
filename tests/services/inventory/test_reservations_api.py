"""Reservations over gRPC: all-or-nothing, ownership, idempotency, extend, release, commit,
automatic expiry and the events announcing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import nats
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from google.protobuf.wrappers_pb2 import StringValue

from services.inventory.config import InventorySettings
from tenpo.inventory.v1 import events_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database, idempotency_table
from tenpo.kit.events import EVENT_TYPE_HEADER
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, atp, expect_error, new_sku, receive

Shared = tuple[Stub, ServiceHost[InventorySettings], str]
STORE = "tokyo-shibuya"


@pytest_asyncio.fixture
async def inventory_events(nats_url: str) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Every inventory event published while the test runs: (type, payload)."""
    seen: list[tuple[str, bytes]] = []
    client = await nats.connect(nats_url)

    async def collect(message: nats.aio.msg.Msg) -> None:
        seen.append(((message.headers or {}).get(EVENT_TYPE_HEADER, ""), message.data))

    await client.subscribe("tenpo.inventory.>", cb=collect)
    try:
        yield seen
    finally:
        await client.drain()


def line(sku: str, quantity: int, location_id: str = STORE) -> pb.StockLine:
    return pb.StockLine(sku=sku, quantity=quantity, location_id=location_id)


async def test_multi_line_reservation_is_all_or_nothing(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    a, b = new_sku(), new_sku()
    await receive(stub, tokens, a, STORE, 5)
    await receive(stub, tokens, b, STORE, 1)
    await expect_error(
        stub.ReserveStock(
            api.ReserveStockRequest(owner="carts/x", lines=[line(a, 2), line(b, 2)]),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
    )
    assert await atp(stub, a, STORE) == 5  # the line that fitted was not held either
    held = await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/x", lines=[line(a, 2), line(b, 1)]),
        metadata=tokens.staff,
    )
    assert held.reservation.state == pb.RESERVATION_STATE_ACTIVE
    assert (await atp(stub, a, STORE), await atp(stub, b, STORE)) == (3, 0)


async def test_safety_stock_is_never_promised(shared_inventory: Shared, tokens: Tokens) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await stub.SetStockLevel(
        api.SetStockLevelRequest(sku=sku, location_id=STORE, on_hand=5, safety_stock=3),
        metadata=tokens.staff,
    )
    await expect_error(
        stub.ReserveStock(
            api.ReserveStockRequest(owner="carts/s", lines=[line(sku, 3)]), metadata=tokens.staff
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
    )
    await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/s", lines=[line(sku, 2)]), metadata=tokens.staff
    )


async def test_anywhere_reservations_follow_the_sourcing_policy(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    a, b = new_sku(), new_sku()
    await receive(stub, tokens, a, "tokyo-ginza", 9)  # Ginza does not ship
    await receive(stub, tokens, a, "fc-chiba", 2)
    await receive(stub, tokens, b, "fc-chiba", 2)
    await receive(stub, tokens, a, "dc-kanto", 9)
    await receive(stub, tokens, b, "dc-kanto", 9)
    first = await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/any", lines=[line(a, 2, ""), line(b, 2, "")]),
        metadata=tokens.staff,
    )
    assert {ln.location_id for ln in first.reservation.lines} == {
        "fc-chiba"
    }  # best priority, one parcel
    second = await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/any", lines=[line(a, 1, ""), line(b, 1, "")]),
        metadata=tokens.staff,
    )
    assert {ln.location_id for ln in second.reservation.lines} == {"dc-kanto"}
    assert await atp(stub, a, "tokyo-ginza") == 9


async def test_customers_own_their_reservations(shared_inventory: Shared, tokens: Tokens) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 5)
    await expect_error(
        stub.ReserveStock(api.ReserveStockRequest(owner="carts/c", lines=[line(sku, 1)])),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    mine = (
        await stub.ReserveStock(
            api.ReserveStockRequest(owner="customers/customer-1/carts/c", lines=[line(sku, 1)]),
            metadata=tokens.customer,
        )
    ).reservation
    assert mine.customer_id == "customer-1"
    other = tokens.metadata(tokens.mint(subject="customer-2", kind="customer"))
    await expect_error(
        stub.GetReservation(api.GetReservationRequest(id=mine.id), metadata=other),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.ReleaseReservation(api.ReleaseReservationRequest(id=mine.id), metadata=other),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        stub.CommitReservation(api.CommitReservationRequest(id=mine.id), metadata=tokens.customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert (
        await stub.GetReservation(api.GetReservationRequest(id=mine.id), metadata=tokens.customer)
    ).reservation.id == mine.id
    released = (
        await stub.ReleaseReservation(
            api.ReleaseReservationRequest(id=mine.id), metadata=tokens.customer
        )
    ).reservation
    assert released.state == pb.RESERVATION_STATE_RELEASED
    assert await atp(stub, sku, STORE) == 5


async def test_retried_reservation_returns_the_first_one(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 2)
    request = api.ReserveStockRequest(owner="carts/r", lines=[line(sku, 2)], request_id=f"r-{sku}")
    first, *retries = await asyncio.gather(
        *(stub.ReserveStock(request, metadata=tokens.staff) for _ in range(5))
    )
    assert {r.reservation.id for r in retries} == {first.reservation.id}
    late = await stub.ReserveStock(
        request, metadata=tokens.staff
    )  # stock is gone, the answer is not
    assert late.reservation.id == first.reservation.id
    await expect_error(
        stub.ReserveStock(
            api.ReserveStockRequest(owner="carts/r", lines=[line(sku, 1)], request_id=f"r-{sku}"),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_retry_while_stock_remains_holds_nothing_more(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 10)
    request = api.ReserveStockRequest(owner="carts/s", lines=[line(sku, 3)], request_id=f"s-{sku}")
    first = await stub.ReserveStock(request, metadata=tokens.staff)
    # Stock is still there, so the retry could be placed again: it must not be.
    for _ in range(3):
        again = await stub.ReserveStock(request, metadata=tokens.staff)
        assert again.reservation.id == first.reservation.id
    assert await atp(stub, sku, STORE) == 7


async def test_commit_turns_the_hold_into_a_sale(shared_inventory: Shared, tokens: Tokens) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 5)
    held = (
        await stub.ReserveStock(
            api.ReserveStockRequest(owner="orders/A-1", lines=[line(sku, 2)]), metadata=tokens.staff
        )
    ).reservation
    committed = (
        await stub.CommitReservation(
            api.CommitReservationRequest(id=held.id), metadata=tokens.staff
        )
    ).reservation
    assert committed.state == pb.RESERVATION_STATE_COMMITTED
    again = (
        await stub.CommitReservation(
            api.CommitReservationRequest(id=held.id), metadata=tokens.staff
        )
    ).reservation
    assert again.state == pb.RESERVATION_STATE_COMMITTED
    level = (
        (await stub.GetAvailability(api.GetAvailabilityRequest(skus=[sku]), metadata=tokens.staff))
        .availabilities[0]
        .locations[0]
    )
    assert (level.on_hand, level.reserved, level.available_to_promise) == (3, 0, 3)
    sales = await stub.ListMovements(api.ListMovementsRequest(sku=sku), metadata=tokens.staff)
    assert next((m.reason, m.quantity, m.reference) for m in sales.movements) == (
        pb.MOVEMENT_REASON_SALE,
        -2,
        f"reservations/{held.id}",
    )
    await expect_error(
        stub.ReleaseReservation(api.ReleaseReservationRequest(id=held.id), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_NOT_ACTIVE",
    )


async def test_expired_reservations_are_released_and_announced(
    shared_inventory: Shared, tokens: Tokens, inventory_events: list[tuple[str, bytes]]
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 3)
    short = (
        await stub.ReserveStock(
            api.ReserveStockRequest(
                owner="carts/e", lines=[line(sku, 2)], ttl=Duration(nanos=300_000_000)
            ),
            metadata=tokens.staff,
        )
    ).reservation
    kept = (
        await stub.ReserveStock(
            api.ReserveStockRequest(
                owner="carts/k", lines=[line(sku, 1)], ttl=Duration(nanos=300_000_000)
            ),
            metadata=tokens.staff,
        )
    ).reservation
    extended = (
        await stub.ExtendReservation(
            api.ExtendReservationRequest(id=kept.id, ttl=Duration(seconds=600)),
            metadata=tokens.staff,
        )
    ).reservation
    assert extended.expire_time.seconds > kept.expire_time.seconds
    assert await atp(stub, sku, STORE) == 0
    for _ in range(50):
        await asyncio.sleep(0.1)
        if await atp(stub, sku, STORE) == 2:
            break
    assert await atp(stub, sku, STORE) == 2
    gone = (
        await stub.GetReservation(api.GetReservationRequest(id=short.id), metadata=tokens.staff)
    ).reservation
    assert gone.state == pb.RESERVATION_STATE_EXPIRED
    still = (
        await stub.GetReservation(api.GetReservationRequest(id=kept.id), metadata=tokens.staff)
    ).reservation
    assert still.state == pb.RESERVATION_STATE_ACTIVE
    await expect_error(
        stub.CommitReservation(api.CommitReservationRequest(id=short.id), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_NOT_ACTIVE",
    )
    for _ in range(30):
        expired = [
            events_pb2.ReservationExpired.FromString(data)
            for kind, data in inventory_events
            if kind == "tenpo.inventory.v1.ReservationExpired"
        ]
        if any(e.reservation.id == short.id for e in expired):
            break
        await asyncio.sleep(0.1)
    match = [e for e in expired if e.reservation.id == short.id]
    assert match and match[0].reservation.state == pb.RESERVATION_STATE_EXPIRED
    assert match[0].reservation.lines[0].sku == sku


async def test_stock_events_announce_out_of_stock_low_stock_and_back_in_stock(
    shared_inventory: Shared, tokens: Tokens, inventory_events: list[tuple[str, bytes]]
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 4)  # BackInStock (0 → 4); Shibuya's threshold is 2
    held = (
        await stub.ReserveStock(
            api.ReserveStockRequest(owner="carts/ev", lines=[line(sku, 2)]), metadata=tokens.staff
        )
    ).reservation
    await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/ev", lines=[line(sku, 2)]), metadata=tokens.staff
    )
    await stub.ReleaseReservation(api.ReleaseReservationRequest(id=held.id), metadata=tokens.staff)

    def ours() -> list[str]:
        kinds = []
        for kind, data in inventory_events:
            name = kind.rsplit(".", 1)[-1]
            message = getattr(events_pb2, name, None)
            if (
                message is not None
                and name != "ReservationReleased"
                and message.FromString(data).sku == sku
            ):
                kinds.append(name)
        return kinds

    for _ in range(30):
        if len(ours()) >= 8:
            break
        await asyncio.sleep(0.1)
    assert ours() == [
        "StockChanged",
        "BackInStock",
        "StockChanged",
        "LowStock",  # 4 → 2
        "StockChanged",
        "OutOfStock",  # 2 → 0
        "StockChanged",
        "BackInStock",  # 0 → 2 (already low: no second LowStock)
    ]
    changes = [
        events_pb2.StockChanged.FromString(d)
        for k, d in inventory_events
        if k.endswith("StockChanged")
    ]
    assert [c.available_to_promise for c in changes if c.sku == sku] == [4, 2, 0, 2]


async def test_reserve_stock_keeps_its_request_ids_in_the_kits_idempotency_table(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, url = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 3)
    held = await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/k", lines=[line(sku, 1)], request_id=f"k-{sku}"),
        metadata=tokens.staff,
    )
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            rows = (
                await uow.session.execute(
                    sa.select(idempotency_table.c.request_id, idempotency_table.c.response).where(
                        idempotency_table.c.scope == "ReserveStock",
                        idempotency_table.c.request_id.like(f"%k-{sku}"),
                    )
                )
            ).all()
    finally:
        await db.dispose()
    assert [StringValue.FromString(r.response).value for r in rows] == [held.reservation.id]
