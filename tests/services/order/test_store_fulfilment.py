"""Store fulfilment on store devices against the real inventory: the store's work list,
pick with units not found re-sourced elsewhere or cancelled, pack."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.devtools.keys import DevKeys
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import STORE, Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import OTHER_STORE, device, inventory_stopped, place

pytestmark = pytest.mark.integration


async def stock_at(stack: Stack, sku: str, location: str, quantity: int) -> None:
    await stack.inventory.AdjustStock(
        inventory_api.AdjustStockRequest(
            sku=sku,
            location_id=location,
            quantity=quantity,
            reason=inventory_pb.MOVEMENT_REASON_RECEIPT,
        ),
        metadata=stack.staff,
    )


async def atp_at(stack: Stack, sku: str, location: str) -> int:
    found = await stack.inventory.GetAvailability(
        inventory_api.GetAvailabilityRequest(skus=[sku], location_ids=[location])
    )
    levels = found.availabilities[0].locations
    return levels[0].available_to_promise if levels else 0


async def test_units_not_found_are_resourced_at_another_store_then_packed(stack: Stack) -> None:
    sku = await stack.stock(2, price=1000)
    await stock_at(stack, sku, OTHER_STORE, 5)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 2))
    [original] = order.fulfillments
    assert original.location_id == STORE

    picked = (
        await stack.orders.PickFulfillment(
            api.PickFulfillmentRequest(
                order_id=order.id,
                fulfillment_id=original.id,
                missing_lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
                request_id=uuid.uuid4().hex,
            ),
            metadata=device(stack),
        )
    ).order

    first, moved = picked.fulfillments
    assert (first.status, [(li.sku, li.quantity) for li in first.lines]) == (
        pb.FULFILLMENT_STATUS_PICKED,
        [(sku, 1)],
    )
    assert (moved.status, moved.location_id, moved.store_id) == (
        pb.FULFILLMENT_STATUS_PREPARING,
        OTHER_STORE,
        STORE,  # still collected at the pickup store
    )
    assert [(li.sku, li.quantity) for li in moved.lines] == [(sku, 1)]
    assert first.amount.units + moved.amount.units == order.totals.total.units
    assert await atp_at(stack, sku, OTHER_STORE) == 4  # reserved and committed there

    # The store's work list: both, earliest due first; another store's device sees none of it.
    listed = await stack.orders.ListStoreFulfillments(
        api.ListStoreFulfillmentsRequest(store_id=STORE, page_size=200), metadata=device(stack)
    )
    mine = [f for f in listed.fulfillments if f.order_id == order.id]
    assert {f.id for f in mine} == {first.id, moved.id}
    assert all(f.order_number == order.order_number for f in mine)
    dues = [f.due_time.ToDatetime() for f in listed.fulfillments]
    assert dues == sorted(dues)
    await expect_error(
        stack.orders.ListStoreFulfillments(
            api.ListStoreFulfillmentsRequest(store_id=STORE), metadata=device(stack, OTHER_STORE)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "STORE_MISMATCH",
    )

    packed = (
        await stack.orders.PackFulfillment(
            api.PackFulfillmentRequest(order_id=order.id, fulfillment_id=first.id),
            metadata=device(stack),
        )
    ).order
    assert packed.fulfillments[0].status == pb.FULFILLMENT_STATUS_PACKED
    ready = await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=first.id),
        metadata=device(stack),
    )
    assert ready.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP


async def test_units_found_nowhere_are_cancelled_and_never_captured(stack: Stack) -> None:
    sku = await stack.stock(1, price=800)
    other = await stack.stock(3, price=500)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_DELIVERY, (sku, 1), (other, 2))
    [original] = order.fulfillments

    picked = (
        await stack.orders.PickFulfillment(
            api.PickFulfillmentRequest(
                order_id=order.id,
                fulfillment_id=original.id,
                missing_lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
            ),
            metadata=stack.staff,
        )
    ).order

    first, gone = picked.fulfillments
    assert [(li.sku, li.quantity) for li in first.lines] == [(other, 2)]
    assert (gone.status, gone.cancel_reason, gone.capture_state) == (
        pb.FULFILLMENT_STATUS_CANCELLED,
        "NOT_FOUND_ANYWHERE",
        pb.CAPTURE_STATE_RELEASED,
    )
    assert first.amount.units + gone.amount.units == order.totals.total.units
    shipped = (
        await stack.orders.ShipFulfillment(
            api.ShipFulfillmentRequest(
                order_id=order.id, fulfillment_id=first.id, carrier="sagawa", tracking_number="9"
            ),
            metadata=stack.staff,
        )
    ).order
    # Only what left is captured: the missing unit's share of the authorization never is.
    assert shipped.fulfillments[0].capture_state == pb.CAPTURE_STATE_CAPTURED
    assert shipped.payment_state == pb.PAYMENT_STATE_CAPTURED
    assert shipped.fulfillments[0].amount.units < order.totals.total.units


async def test_bad_missing_lines_change_nothing(stack: Stack) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    for missing in (
        pb.FulfillmentLine(sku="NOT-IN-IT", quantity=1),
        pb.FulfillmentLine(sku=sku, quantity=2),
    ):
        await expect_error(
            stack.orders.PickFulfillment(
                api.PickFulfillmentRequest(
                    order_id=order.id, fulfillment_id=fid, missing_lines=[missing]
                ),
                metadata=device(stack),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MISSING_LINE_INVALID",
        )
    got = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert [f.status for f in got.fulfillments] == [pb.FULFILLMENT_STATUS_PREPARING]


async def test_a_pick_waits_while_inventory_is_down(
    stack: Stack, postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 2))
    fid = order.fulfillments[0].id
    request = api.PickFulfillmentRequest(
        order_id=order.id,
        fulfillment_id=fid,
        missing_lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
    )

    async with inventory_stopped(stack, postgres_admin_url, nats_url, dev_keys):
        await expect_error(
            stack.orders.PickFulfillment(request, metadata=device(stack)),
            grpc.StatusCode.UNAVAILABLE,
            "INVENTORY_UNAVAILABLE",
        )

    got = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert [(f.status, f.lines[0].quantity) for f in got.fulfillments] == [
        (pb.FULFILLMENT_STATUS_PREPARING, 2)
    ]


async def test_two_deliveries_arriving_at_once_complete_the_order_once(stack: Stack) -> None:
    first = await stack.stock(1, price=1000)
    second = await stack.stock(0, price=2000)
    await stock_at(stack, second, "osaka-umeda", 1)  # ships from another store
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(
        stack, customer, cart_pb.FULFILLMENT_METHOD_DELIVERY, (first, 1), (second, 1)
    )
    assert sorted(f.location_id for f in order.fulfillments) == ["osaka-umeda", STORE]
    assert sum(f.amount.units for f in order.fulfillments) == order.totals.total.units
    for fulfilment in order.fulfillments:
        await stack.orders.ShipFulfillment(
            api.ShipFulfillmentRequest(
                order_id=order.id,
                fulfillment_id=fulfilment.id,
                carrier="yamato",
                tracking_number=fulfilment.number,
            ),
            metadata=stack.staff,
        )

    await asyncio.gather(
        *(
            stack.orders.UpdateDeliveryStatus(
                api.UpdateDeliveryStatusRequest(
                    order_id=order.id,
                    fulfillment_id=f.id,
                    status=pb.FULFILLMENT_STATUS_DELIVERED,
                ),
                metadata=stack.staff,
            )
            for f in order.fulfillments
        )
    )

    got = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert got.status == pb.ORDER_STATUS_COMPLETED
    assert got.payment_state == pb.PAYMENT_STATE_CAPTURED
    completed = [
        ev.OrderCompleted.FromString(p) for p in await stack.outbox_events("OrderCompleted")
    ]
    assert [e.order_id for e in completed].count(order.id) == 1


async def test_a_store_sees_its_work_to_pick_in_waves(stack: Stack) -> None:
    store = f"test-{uuid.uuid4().hex[:10]}"
    await stack.inventory.CreateLocation(
        inventory_api.CreateLocationRequest(
            location=inventory_pb.Location(
                id=store,
                display_name="テスト店",
                type=inventory_pb.LOCATION_TYPE_STORE,
                capabilities=[inventory_pb.CAPABILITY_CLICK_AND_COLLECT],
            )
        ),
        metadata=stack.staff,
    )
    sku, other = await stack.stock(0), await stack.stock(0)
    for item in (sku, other):
        await stack.inventory.AdjustStock(
            inventory_api.AdjustStockRequest(
                sku=item,
                location_id=store,
                quantity=10,
                reason=inventory_pb.MOVEMENT_REASON_RECEIPT,
            ),
            metadata=stack.staff,
        )
    placed = []
    for lines in (((sku, 1), (other, 2)), ((sku, 2),), ((other, 1),)):
        customer = f"c-{uuid.uuid4().hex[:8]}"
        md = stack.customer(customer)
        cart = await stack.cart(customer, *lines)
        update = cart_api.UpdateCartRequest(
            cart=cart_pb.Cart(
                id=cart.id,
                etag=cart.etag,
                fulfillment=cart_pb.Fulfillment(
                    method=cart_pb.FULFILLMENT_METHOD_PICKUP, store_id=store
                ),
            )
        )
        update.update_mask.paths.append("fulfillment")
        cart = (await stack.carts.UpdateCart(update, metadata=md)).cart
        placed.append((await stack.orders.PlaceOrder(stack.place_request(cart), metadata=md)).order)
    ids = [o.fulfillments[0].id for o in placed]

    waves = (
        await stack.orders.ListPickWaves(
            api.ListPickWavesRequest(store_id=store, max_fulfillments=2),
            metadata=device(stack, store=store),
        )
    ).waves
    assert [list(w.fulfillment_ids) for w in waves] == [ids[:2], ids[2:]]
    assert [(li.sku, li.quantity) for li in waves[0].pick_lines] == sorted([(sku, 3), (other, 2)])
    # Picked: no longer to pick.
    await stack.orders.PickFulfillment(
        api.PickFulfillmentRequest(order_id=placed[0].id, fulfillment_id=ids[0]),
        metadata=device(stack, store=store),
    )
    again = await stack.orders.ListPickWaves(
        api.ListPickWavesRequest(store_id=store), metadata=stack.staff
    )
    assert [list(w.fulfillment_ids) for w in again.waves] == [ids[1:]]
    await expect_error(
        stack.orders.ListPickWaves(
            api.ListPickWavesRequest(store_id=store), metadata=device(stack)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "STORE_MISMATCH",
    )
    await expect_error(
        stack.orders.ListPickWaves(
            api.ListPickWavesRequest(store_id=store, wave_minutes=5), metadata=stack.staff
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "WAVE_INVALID",
    )
