"""Daily ship-from-store and same-day capacity over the API: set on a location, used up by
reservations (the durable point), given back by releases, respected by sourcing — and never
exceeded by concurrent reservations through two replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import grpc
import pytest
import sqlalchemy as sa

from services.inventory.models import capacity_usage
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, expect_error, new_sku, receive

Shared = tuple[Stub, object, str]
#: Far from the demo network, so a test store there is the nearest source.
SAPPORO = common_pb2.GeoPoint(latitude=43.0687, longitude=141.3508)
SHIP = pb.ALLOCATION_METHOD_SHIP
SHIP_FROM_STORE = pb.CAPABILITY_SHIP_FROM_STORE


async def _new_store(
    stub: Stub, tokens: Tokens, *, units: int = 0, orders: int = 0, same_day_orders: int = 0
) -> str:
    store_id = f"test-{uuid.uuid4().hex[:10]}"
    await stub.CreateLocation(
        api.CreateLocationRequest(
            location=pb.Location(
                id=store_id,
                display_name="テスト店",
                type=pb.LOCATION_TYPE_STORE,
                geo_point=SAPPORO,
                priority=50,
                capabilities=[
                    pb.CAPABILITY_CLICK_AND_COLLECT,
                    SHIP_FROM_STORE,
                    pb.CAPABILITY_SAME_DAY_DELIVERY,
                ],
                ship_from_store_capacity=pb.DailyCapacity(
                    units_per_day=units, orders_per_day=orders
                ),
                same_day_capacity=pb.DailyCapacity(orders_per_day=same_day_orders),
                same_day_radius_km=10,
            )
        ),
        metadata=tokens.staff,
    )
    return store_id


def _reserve(
    sku: str, quantity: int, location_id: str = "", method: int = 0
) -> api.ReserveStockRequest:
    return api.ReserveStockRequest(
        owner=f"orders/{uuid.uuid4().hex[:8]}",
        lines=[pb.StockLine(sku=sku, quantity=quantity, location_id=location_id, method=method)],
        near=SAPPORO,
    )


async def _used(database_url: str, location_id: str) -> dict[int, tuple[int, int]]:
    """kind → (units, orders) of the store's row for today (Asia/Tokyo)."""
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo")).date()
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            rows = await uow.session.execute(
                sa.select(capacity_usage).where(
                    capacity_usage.c.location_id == location_id, capacity_usage.c.day == today
                )
            )
            return {r.kind: (r.units, r.orders) for r in rows}
    finally:
        await db.dispose()


async def test_capacity_is_a_location_setting_with_bounds(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    store_id = await _new_store(stub, tokens, orders=3)
    found = (await stub.GetLocation(api.GetLocationRequest(id=store_id))).location
    assert found.ship_from_store_capacity.orders_per_day == 3
    assert found.same_day_radius_km == 10
    update = api.UpdateLocationRequest(
        location=pb.Location(
            id=store_id, ship_from_store_capacity=pb.DailyCapacity(units_per_day=-1)
        )
    )
    update.update_mask.paths.append("ship_from_store_capacity")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateLocation(update, metadata=tokens.staff)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = decode_error(caught.value)
    assert info.reason == "CAPACITY_INVALID"
    assert [v.field for v in info.field_violations] == [
        "location.ship_from_store_capacity.units_per_day"
    ]
    update.location.ship_from_store_capacity.units_per_day = 40
    changed = (await stub.UpdateLocation(update, metadata=tokens.staff)).location
    # The mask replaced the whole setting: units now, no order limit.
    assert (
        changed.ship_from_store_capacity.units_per_day,
        changed.ship_from_store_capacity.orders_per_day,
    ) == (40, 0)
    radius = api.UpdateLocationRequest(location=pb.Location(id=store_id, same_day_radius_km=-3))
    radius.update_mask.paths.append("same_day_radius_km")
    await expect_error(
        stub.UpdateLocation(radius, metadata=tokens.staff),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SAME_DAY_RADIUS_INVALID",
    )


async def test_shipping_reservations_use_capacity_releases_give_it_back_pickups_do_not(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, url = shared_inventory
    store_id = await _new_store(stub, tokens, units=5, orders=2)
    sku = new_sku("CAP")
    await receive(stub, tokens, sku, store_id, 50)
    first = (
        await stub.ReserveStock(_reserve(sku, 3, store_id, SHIP), metadata=tokens.staff)
    ).reservation
    assert first.lines[0].method == SHIP
    # 2 units left of 5: three more are refused, however few orders.
    await expect_error(
        stub.ReserveStock(_reserve(sku, 3, store_id, SHIP), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAPACITY_EXHAUSTED",
    )
    second = (
        await stub.ReserveStock(_reserve(sku, 2, store_id, SHIP), metadata=tokens.staff)
    ).reservation
    assert await _used(url, store_id) == {int(SHIP_FROM_STORE): (5, 2)}
    # A pickup at the store (no method) uses no shipping capacity.
    await stub.ReserveStock(_reserve(sku, 4, store_id), metadata=tokens.staff)
    await expect_error(
        stub.ReserveStock(_reserve(sku, 1, store_id, SHIP), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAPACITY_EXHAUSTED",
    )
    # A release gives its share back; a commit keeps it used (the parcel leaves today).
    await stub.ReleaseReservation(api.ReleaseReservationRequest(id=first.id), metadata=tokens.staff)
    await stub.CommitReservation(api.CommitReservationRequest(id=second.id), metadata=tokens.staff)
    assert await _used(url, store_id) == {int(SHIP_FROM_STORE): (2, 1)}
    # A customer's own hold respects the capacity but uses none of it.
    customer = tokens.customer
    held = (
        await stub.ReserveStock(
            api.ReserveStockRequest(
                owner="customers/customer-1/carts/c",
                lines=[pb.StockLine(sku=sku, quantity=1, location_id=store_id, method=SHIP)],
            ),
            metadata=customer,
        )
    ).reservation
    assert await _used(url, store_id) == {int(SHIP_FROM_STORE): (2, 1)}
    third = (
        await stub.ReserveStock(_reserve(sku, 3, store_id, SHIP), metadata=tokens.staff)
    ).reservation
    assert await _used(url, store_id) == {int(SHIP_FROM_STORE): (5, 2)}
    assert third.lines[0].location_id == store_id
    await expect_error(
        stub.ReserveStock(
            api.ReserveStockRequest(
                owner="customers/customer-1/carts/d",
                lines=[pb.StockLine(sku=sku, quantity=1, location_id=store_id, method=SHIP)],
            ),
            metadata=customer,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAPACITY_EXHAUSTED",
    )
    await stub.ReleaseReservation(api.ReleaseReservationRequest(id=held.id), metadata=customer)
    assert await _used(url, store_id) == {int(SHIP_FROM_STORE): (5, 2)}


async def test_sourcing_skips_a_store_whose_capacity_is_used_up(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    store_id = await _new_store(stub, tokens, orders=1)
    sku = new_sku("CAPS")
    await receive(stub, tokens, sku, store_id, 10)
    await receive(stub, tokens, sku, "dc-kanto", 10)
    plan_request = api.PlanFulfillmentRequest(
        lines=[pb.StockLine(sku=sku, quantity=1)], delivery_point=SAPPORO
    )
    before = (await stub.PlanFulfillment(plan_request)).plan
    assert [a.location_id for a in before.allocations] == [store_id]
    # The order service reserves the plan's lines with their method; that uses the day.
    line = before.allocations[0]
    await stub.ReserveStock(
        _reserve(line.sku, int(line.quantity), line.location_id, line.method),
        metadata=tokens.staff,
    )
    after = (await stub.PlanFulfillment(plan_request)).plan
    assert [a.location_id for a in after.allocations] == ["dc-kanto"]
    assert any("capacity used up" in note for note in after.explanation)
    # Reservations sourced anywhere skip it too.
    anywhere = (await stub.ReserveStock(_reserve(sku, 1), metadata=tokens.staff)).reservation
    assert [(ln.location_id, ln.method) for ln in anywhere.lines] == [("dc-kanto", SHIP)]
    # Same-day has a capacity of its own (none set here): the store still serves it.
    same_day = (
        await stub.PlanFulfillment(
            api.PlanFulfillmentRequest(
                lines=[pb.StockLine(sku=sku, quantity=1)], delivery_point=SAPPORO, same_day=True
            )
        )
    ).plan
    assert [(a.location_id, a.method) for a in same_day.allocations] == [
        (store_id, pb.ALLOCATION_METHOD_SAME_DAY)
    ]


async def test_concurrent_reservations_never_exceed_a_stores_daily_capacity(
    replicas: list[Stub], tokens: Tokens, database_url: str
) -> None:
    one, _ = replicas
    orders_store = await _new_store(one, tokens, orders=7)
    units_store = await _new_store(one, tokens, units=11)
    sku = new_sku("CAPC")
    await receive(one, tokens, sku, orders_store, 500)
    await receive(one, tokens, sku, units_store, 500)

    async def attempt(i: int) -> str:
        stub = replicas[i % 2]
        if i % 3 == 0:  # a line at the store, as the order service reserves a plan
            request = _reserve(sku, 1, orders_store, SHIP)
        elif i % 3 == 1:
            request = _reserve(sku, 2, units_store, SHIP)
        else:  # sourced anywhere: only the two test stores hold the SKU
            request = _reserve(sku, 1)
        try:
            reservation = (await stub.ReserveStock(request, metadata=tokens.staff)).reservation
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason
        return reservation.lines[0].location_id

    outcomes = Counter(await asyncio.gather(*(attempt(i) for i in range(120))))
    used = await _used(database_url, orders_store)
    used_units = await _used(database_url, units_store)
    # Exactly the capacity: 7 orders at one store, 11 units at the other; every other
    # request was refused (a line at a full store) or found no source (anywhere).
    assert used == {int(SHIP_FROM_STORE): (outcomes[orders_store], 7)}
    assert used_units[int(SHIP_FROM_STORE)][0] <= 11
    assert (
        outcomes[orders_store]
        + outcomes[units_store]
        + outcomes["CAPACITY_EXHAUSTED"]
        + (outcomes["INSUFFICIENT_STOCK"])
        == 120
    )
    assert used_units[int(SHIP_FROM_STORE)][0] >= 10  # filled up (2-unit lines may leave 1)
    assert outcomes["CAPACITY_EXHAUSTED"] > 0 and outcomes["INSUFFICIENT_STOCK"] > 0
    # The counters equal what the active reservations hold.
    levels = await one.ListStockLevels(
        api.ListStockLevelsRequest(location_id=units_store), metadata=tokens.staff
    )
    assert levels.stock_levels[0].reserved == used_units[int(SHIP_FROM_STORE)][0]
    orders_levels = await one.ListStockLevels(
        api.ListStockLevelsRequest(location_id=orders_store), metadata=tokens.staff
    )
    assert orders_levels.stock_levels[0].reserved == used[int(SHIP_FROM_STORE)][0]
