"""Daily capacity through checkout, against the real inventory: the saga reserves each line
with its allocation method, so a store's ship-from-store limit counts the orders it sends
and sourcing moves on when it is used up; capacity used up between the plan and the
reservation fails the checkout with the location, compensated."""

from __future__ import annotations

import uuid

import grpc
import pytest

from services.order.domain.saga import SagaStep
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack
from tests.services.order.test_fulfilments import device

pytestmark = pytest.mark.integration

#: Far from the demo network: a test store here is the nearest source of a delivery to
#: Hokkaido (measured from Sapporo).
SAPPORO = common_pb2.GeoPoint(latitude=43.0687, longitude=141.3508)
#: The demo network's fulfilment centre (no daily limit).
FC = "fc-chiba"


async def new_store(stack: Stack, orders_per_day: int, where: common_pb2.GeoPoint = SAPPORO) -> str:
    store_id = f"test-{uuid.uuid4().hex[:10]}"
    await stack.inventory.CreateLocation(
        inventory_api.CreateLocationRequest(
            location=inventory_pb.Location(
                id=store_id,
                display_name="テスト札幌店",
                type=inventory_pb.LOCATION_TYPE_STORE,
                geo_point=where,
                priority=50,
                capabilities=[
                    inventory_pb.CAPABILITY_CLICK_AND_COLLECT,
                    inventory_pb.CAPABILITY_SHIP_FROM_STORE,
                ],
                ship_from_store_capacity=inventory_pb.DailyCapacity(orders_per_day=orders_per_day),
            )
        ),
        metadata=stack.staff,
    )
    return store_id


async def receive(stack: Stack, sku: str, location_id: str, quantity: int) -> None:
    await stack.inventory.AdjustStock(
        inventory_api.AdjustStockRequest(
            sku=sku,
            location_id=location_id,
            quantity=quantity,
            reason=inventory_pb.MOVEMENT_REASON_RECEIPT,
        ),
        metadata=stack.staff,
    )


async def atp(stack: Stack, sku: str, location_id: str) -> int:
    found = await stack.inventory.GetAvailability(
        inventory_api.GetAvailabilityRequest(skus=[sku], location_ids=[location_id])
    )
    levels = found.availabilities[0].locations
    return levels[0].available_to_promise if levels else 0


async def delivery_cart(stack: Stack, customer: str, sku: str, quantity: int) -> cart_pb.Cart:
    """The customer's cart of ``quantity`` × ``sku`` delivered to Sapporo."""
    md = stack.customer(customer)
    cart = await stack.cart(customer, (sku, quantity))
    choice = cart_pb.Fulfillment(
        method=cart_pb.FULFILLMENT_METHOD_DELIVERY,
        address=common_pb2.PostalAddress(
            region_code="JP",
            postal_code="060-0001",
            administrative_area="北海道",
            locality="札幌市中央区",
            address_lines=["北1条西2丁目"],
            recipient="佐藤 花子",
        ),
    )
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(id=cart.id, etag=cart.etag, fulfillment=choice)
    )
    update.update_mask.paths.append("fulfillment")
    return (await stack.carts.UpdateCart(update, metadata=md)).cart


async def test_a_store_ships_only_its_daily_orders_then_sourcing_moves_on(
    stack: Stack,
) -> None:
    store = await new_store(stack, orders_per_day=1)
    sku = await stack.stock(0, price=2000)
    await receive(stack, sku, store, 10)
    await receive(stack, sku, FC, 10)

    first_customer, second_customer = (f"c-{uuid.uuid4().hex[:8]}" for _ in range(2))
    first_cart = await delivery_cart(stack, first_customer, sku, 1)
    first = (
        await stack.orders.PlaceOrder(
            stack.place_request(first_cart), metadata=stack.customer(first_customer)
        )
    ).order
    assert first.status == pb.ORDER_STATUS_PLACED
    assert [li.location_id for li in first.lines] == [store]  # the nearest source

    # The first order used the store's one parcel of the day (its reservation said SHIP):
    # the next delivery to the same street comes from the fulfilment centre.
    second_cart = await delivery_cart(stack, second_customer, sku, 1)
    second = (
        await stack.orders.PlaceOrder(
            stack.place_request(second_cart), metadata=stack.customer(second_customer)
        )
    ).order
    assert second.status == pb.ORDER_STATUS_PLACED
    assert [li.location_id for li in second.lines] == [FC]
    assert (await atp(stack, sku, store), await atp(stack, sku, FC)) == (9, 9)


async def test_capacity_used_up_before_the_reservation_fails_the_checkout_with_the_location(
    stack: Stack,
) -> None:
    store = await new_store(stack, orders_per_day=1)
    sku = await stack.stock(0, price=2000)
    await receive(stack, sku, store, 10)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await delivery_cart(stack, customer, sku, 2)
    request = stack.place_request(cart)

    async def another_order_takes_the_day(order_id: uuid.UUID, step: SagaStep) -> None:
        # Between this checkout's plan and its reservation, another parcel of the day.
        if step is SagaStep.RESERVE_STOCK:
            await stack.inventory.ReserveStock(
                inventory_api.ReserveStockRequest(
                    owner=f"orders/{uuid.uuid4().hex[:8]}",
                    lines=[
                        inventory_pb.StockLine(
                            sku=sku,
                            quantity=1,
                            location_id=store,
                            method=inventory_pb.ALLOCATION_METHOD_SHIP,
                        )
                    ],
                ),
                metadata=stack.staff,
            )

    stack.checkout.before_step = another_order_takes_the_day
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.orders.PlaceOrder(request, metadata=stack.customer(customer))
    finally:
        stack.checkout.before_step = None

    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    details = decode_error(caught.value)
    assert details.reason == "FULFILLMENT_CAPACITY_EXHAUSTED"
    assert details.metadata == {"location_id": store}
    # Compensated: nothing of this order is held (only the other parcel), nothing charged,
    # the cart is still the shopper's to try again.
    assert await atp(stack, sku, store) == 9
    failed = (
        await stack.orders.ListOrders(
            api.ListOrdersRequest(statuses=[pb.ORDER_STATUS_FAILED]),
            metadata=stack.customer(customer),
        )
    ).orders
    assert [(o.status, o.failure_reason) for o in failed] == [
        (pb.ORDER_STATUS_FAILED, "FULFILLMENT_CAPACITY_EXHAUSTED")
    ]
    assert await stack.sandbox_state(failed[0].id) == "none"  # never authorized
    open_cart = (
        await stack.carts.GetCart(
            cart_api.GetCartRequest(cart_id=cart.id), metadata=stack.customer(customer)
        )
    ).cart
    assert open_cart.status == cart_pb.CART_STATUS_ACTIVE
    # A retry of the request_id hears the same answer, location included.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stack.orders.PlaceOrder(request, metadata=stack.customer(customer))
    assert again.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert decode_error(again.value).metadata == {"location_id": store}


async def test_units_re_sourced_from_a_store_use_its_daily_capacity(stack: Stack) -> None:
    near = await new_store(stack, orders_per_day=0)
    # A little further out, one parcel a day.
    limited = await new_store(
        stack, orders_per_day=1, where=common_pb2.GeoPoint(latitude=43.10, longitude=141.35)
    )
    sku = await stack.stock(0, price=2000)
    await receive(stack, sku, near, 1)
    await receive(stack, sku, limited, 5)
    await receive(stack, sku, FC, 5)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await delivery_cart(stack, customer, sku, 1)
    order = (
        await stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer))
    ).order
    [original] = order.fulfillments
    assert original.location_id == near

    # Not on the shelf at the nearest store: re-sourced at the limited one, as a parcel.
    picked = await stack.orders.PickFulfillment(
        api.PickFulfillmentRequest(
            order_id=order.id,
            fulfillment_id=original.id,
            missing_lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
            request_id=uuid.uuid4().hex,
        ),
        metadata=device(stack, store=near),
    )
    assert [f.location_id for f in picked.order.fulfillments][1:] == [limited]

    # That parcel used the store's day: the next delivery comes from the centre.
    other = f"c-{uuid.uuid4().hex[:8]}"
    second = (
        await stack.orders.PlaceOrder(
            stack.place_request(await delivery_cart(stack, other, sku, 1)),
            metadata=stack.customer(other),
        )
    ).order
    assert [li.location_id for li in second.lines] == [FC]
