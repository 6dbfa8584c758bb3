"""Guest checkout through gRPC against the real cart and inventory: a guest places the order
of a guest cart whose token she holds, with her contact on the order; she reads it only with
the order token PlaceOrder gave her; nobody gets at it by its id alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
import sqlalchemy as sa

from services.order.domain.saga import StepUnavailable
from services.order.usecases.search import forget_guests
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import gateway_channel
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, start_gateway
from tests.services.gateway.test_order_stream import sse_data
from tests.services.order.conftest import OK_CARD, STORE, Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import device

pytestmark = pytest.mark.integration


async def guest_cart(stack: Stack, sku: str, quantity: int) -> tuple[cart_pb.Cart, str]:
    """A web guest's cart of ``quantity`` × ``sku`` for pickup at the store, and its token."""
    created = await stack.carts.CreateCart(cart_api.CreateCartRequest(), metadata=guest())
    token = created.cart_token
    cart = (
        await stack.carts.AddLineItem(
            cart_api.AddLineItemRequest(
                cart_id=created.cart.id, cart_token=token, sku=sku, quantity=quantity
            ),
            metadata=guest(),
        )
    ).cart
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(
            id=cart.id,
            etag=cart.etag,
            fulfillment=cart_pb.Fulfillment(
                method=cart_pb.FULFILLMENT_METHOD_PICKUP, store_id=STORE
            ),
        ),
        cart_token=token,
    )
    update.update_mask.paths.append("fulfillment")
    return (await stack.carts.UpdateCart(update, metadata=guest())).cart, token


def guest() -> tuple[tuple[str, str], ...]:
    """An anonymous web shopper as the gateway vouches for her (minted at call time)."""
    return gateway_channel("WEB")


def guest_request(cart: cart_pb.Cart, token: str, **contact: str) -> api.PlaceOrderRequest:
    return api.PlaceOrderRequest(
        cart_id=cart.id,
        cart_etag=cart.etag,
        payment=pb.Payment(method=pb.PAYMENT_METHOD_CARD, card_token=OK_CARD),
        request_id=str(uuid.uuid4()),
        cart_token=token,
        contact_email=contact.get("email", "Hanako.Guest@Example.jp"),
        contact_phone=contact.get("phone", ""),
    )


async def test_a_guest_orders_her_cart_and_reads_the_order_only_with_its_token(
    stack: Stack,
) -> None:
    sku = await stack.stock(4, price=2500)
    cart, token = await guest_cart(stack, sku, 2)
    request = guest_request(cart, token, phone="090-1234-5678")

    placed = await stack.orders.PlaceOrder(request, metadata=guest())

    order = placed.order
    assert order.status == pb.ORDER_STATUS_PLACED
    assert not order.customer_id
    assert (order.contact_email, order.contact_phone) == ("hanako.guest@example.jp", "09012345678")
    assert len(placed.order_token) >= 43
    assert await stack.atp(sku) == 2
    closed = await stack.carts.GetCart(
        cart_api.GetCartRequest(cart_id=cart.id, cart_token=token), metadata=guest()
    )
    assert closed.cart.status == cart_pb.CART_STATUS_CHECKED_OUT
    # A retry (the network dropped the answer) gets the same order and the same token.
    again = await stack.orders.PlaceOrder(request, metadata=guest())
    assert (again.order.id, again.order_token) == (order.id, placed.order_token)

    # Her token opens it — with the pickup code once it is ready, as for a customer.
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=order.fulfillments[0].id),
        metadata=device(stack),
    )
    mine = await stack.orders.GetOrder(
        api.GetOrderRequest(order_id=order.id, order_token=placed.order_token), metadata=guest()
    )
    assert mine.order.id == order.id
    assert len(mine.order.fulfillments[0].pickup.pickup_code) == 8
    # Anyone else: no order, whatever they try (its id alone, another token, a customer).
    other = await stack.orders.PlaceOrder(
        guest_request(*(await guest_cart(stack, sku, 1))), metadata=guest()
    )
    for metadata, presented in (
        (guest(), ""),
        (guest(), other.order_token),
        (guest(), placed.order_token[:-2] + "AA"),
        (stack.customer(f"c-{uuid.uuid4().hex[:8]}"), ""),
    ):
        await expect_error(
            stack.orders.GetOrder(
                api.GetOrderRequest(order_id=order.id, order_token=presented), metadata=metadata
            ),
            grpc.StatusCode.NOT_FOUND,
            "ORDER_NOT_FOUND",
        )
    # Staff find a guest's order by the contact she gave.
    found = await stack.orders.SearchOrders(
        api.SearchOrdersRequest(email="HANAKO.guest@example.jp"), metadata=stack.staff
    )
    assert order.id in [o.id for o in found.orders]


async def test_a_guests_retry_gets_her_order_while_the_cart_service_does_not_answer(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sku = await stack.stock(3)
    cart, token = await guest_cart(stack, sku, 1)
    request = guest_request(cart, token)
    placed = await stack.orders.PlaceOrder(request, metadata=guest())

    # The answer was lost; by the retry the cart service, which checks her token, is down.
    async def unavailable(cart_id: str, cart_token: str) -> bool:
        raise StepUnavailable("CART_UNAVAILABLE")

    monkeypatch.setattr(stack.checkout.cart, "holds_guest_cart", unavailable)
    again = await stack.orders.PlaceOrder(request, metadata=guest())
    assert (again.order.id, again.order_token) == (placed.order.id, placed.order_token)
    # Not a retry: nothing recorded, so nothing was ordered, as the answer says.
    fresh = guest_request(cart, token)
    await expect_error(
        stack.orders.PlaceOrder(fresh, metadata=guest()),
        grpc.StatusCode.UNAVAILABLE,
        "CART_UNAVAILABLE",
    )
    # The retry's token is part of what it repeats: another one is not the same request.
    forged = api.PlaceOrderRequest()
    forged.CopyFrom(request)
    forged.cart_token = "x" * len(token)
    await expect_error(
        stack.orders.PlaceOrder(forged, metadata=guest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert await stack.atp(sku) == 2


async def test_a_guest_must_hold_the_cart_and_leave_a_contact(stack: Stack) -> None:
    sku = await stack.stock(2)
    cart, token = await guest_cart(stack, sku, 1)
    _, other_token = await guest_cart(stack, sku, 1)

    missing = guest_request(cart, "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.orders.PlaceOrder(missing, metadata=guest())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in decode_error(caught.value).field_violations] == ["cart_token"]
    await expect_error(
        stack.orders.PlaceOrder(guest_request(cart, other_token), metadata=guest()),
        grpc.StatusCode.NOT_FOUND,
        "CART_NOT_FOUND",
    )
    await expect_error(
        stack.orders.PlaceOrder(guest_request(cart, token, email=""), metadata=guest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTACT_REQUIRED",
    )
    await expect_error(
        stack.orders.PlaceOrder(
            guest_request(cart, token, email="not-an-address"), metadata=guest()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTACT_INVALID",
    )
    # A signed-in customer cannot order someone's guest cart (her token or not).
    customer = f"c-{uuid.uuid4().hex[:8]}"
    await expect_error(
        stack.orders.PlaceOrder(
            api.PlaceOrderRequest(
                cart_id=cart.id,
                cart_etag=cart.etag,
                payment=pb.Payment(method=pb.PAYMENT_METHOD_CARD, card_token=OK_CARD),
                request_id=str(uuid.uuid4()),
            ),
            metadata=stack.customer(customer),
        ),
        grpc.StatusCode.NOT_FOUND,
        "CART_NOT_FOUND",
    )
    # Nothing was held or ordered by the refusals: the stock is all there.
    assert await stack.atp(sku) == 2


async def test_a_finished_guest_order_forgets_its_guest_after_the_retention(
    stack: Stack,
) -> None:
    sku = await stack.stock(4)
    orders = []
    for _ in range(2):
        cart, token = await guest_cart(stack, sku, 1)
        placed = await stack.orders.PlaceOrder(
            guest_request(cart, token, phone="03-1234-5678"), metadata=guest()
        )
        orders.append(placed)
    old, recent = orders
    # Both handed over at the store (finished); the first placed long ago.
    for placed in orders:
        fid = placed.order.fulfillments[0].id
        await stack.orders.MarkReadyForPickup(
            api.MarkReadyForPickupRequest(order_id=placed.order.id, fulfillment_id=fid),
            metadata=device(stack),
        )
        code = (
            (
                await stack.orders.GetOrder(
                    api.GetOrderRequest(order_id=placed.order.id, order_token=placed.order_token),
                    metadata=guest(),
                )
            )
            .order.fulfillments[0]
            .pickup.pickup_code
        )
        await stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(
                order_id=placed.order.id, fulfillment_id=fid, pickup_code=code
            ),
            metadata=device(stack),
        )
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text("UPDATE orders SET created_at = now() - interval '200 days' WHERE id = :i"),
            {"i": old.order.id},
        )
        await uow.commit()

    assert await forget_guests(stack.order_db, timedelta(days=180)) >= 1

    async def read(placed: api.PlaceOrderResponse) -> pb.Order:
        got = await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=placed.order.id, order_token=placed.order_token),
            metadata=guest(),
        )
        return got.order

    forgotten = await read(old)
    assert (forgotten.contact_email, forgotten.contact_phone) == ("", "")
    assert forgotten.status == pb.ORDER_STATUS_COMPLETED  # the accounting record stays
    assert forgotten.totals.total.units == old.order.totals.total.units
    kept = await read(recent)
    assert kept.contact_email == "hanako.guest@example.jp"
    assert await forget_guests(stack.order_db, timedelta(days=180)) == 0  # done once


async def picked_up_guest_order(stack: Stack, sku: str, units: int) -> api.PlaceOrderResponse:
    """A guest's pickup order of ``units`` × ``sku``, handed over at the store."""
    cart, token = await guest_cart(stack, sku, units)
    placed = await stack.orders.PlaceOrder(guest_request(cart, token), metadata=guest())
    fid = placed.order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=placed.order.id, fulfillment_id=fid),
        metadata=device(stack),
    )
    code = await _code(stack, placed)
    await stack.orders.ConfirmPickup(
        api.ConfirmPickupRequest(order_id=placed.order.id, fulfillment_id=fid, pickup_code=code),
        metadata=device(stack),
    )
    return placed


async def _code(stack: Stack, placed: api.PlaceOrderResponse) -> str:
    got = await stack.orders.GetOrder(
        api.GetOrderRequest(order_id=placed.order.id, order_token=placed.order_token),
        metadata=guest(),
    )
    return got.order.fulfillments[0].pickup.pickup_code


async def test_a_guest_watches_her_order_with_its_token_and_nobody_else_does(
    stack: Stack,
) -> None:
    sku = await stack.stock(2)
    cart, token = await guest_cart(stack, sku, 1)
    placed = await stack.orders.PlaceOrder(guest_request(cart, token), metadata=guest())
    order = placed.order
    stream = stack.orders.WatchOrder(
        api.WatchOrderRequest(order_id=order.id, order_token=placed.order_token),
        metadata=guest(),
    )
    first = await stream.read()
    assert first.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_PREPARING

    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=order.fulfillments[0].id),
        metadata=device(stack),
    )
    second = await stream.read()
    ready = second.order.fulfillments[0]
    assert ready.status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP
    assert ready.pickup.pickup_code == await _code(stack, placed)  # shown to her, as in GetOrder
    stream.cancel()

    other = await stack.orders.PlaceOrder(
        guest_request(*(await guest_cart(stack, sku, 1))), metadata=guest()
    )
    for metadata, presented in (
        (guest(), ""),
        (guest(), other.order_token),
        (guest(), placed.order_token[:-2] + "AA"),
        (stack.customer(f"c-{uuid.uuid4().hex[:8]}"), ""),
        (device(stack), ""),
    ):
        refused = stack.orders.WatchOrder(
            api.WatchOrderRequest(order_id=order.id, order_token=presented), metadata=metadata
        )
        await expect_error(refused.read(), grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")


async def test_a_guest_watches_her_order_through_the_gateways_server_sent_events(
    stack: Stack, start_gateway: GatewayFactory
) -> None:
    sku = await stack.stock(1)
    cart, token = await guest_cart(stack, sku, 1)
    placed = await stack.orders.PlaceOrder(guest_request(cart, token), metadata=guest())
    order = placed.order
    params = {"orderId": order.id, "orderToken": placed.order_token, "key": WEB_KEY}
    async with start_gateway(targets={"order": f"127.0.0.1:{stack.order_host.port}"}) as gw:
        async with gw.client.stream("GET", "/v1/stream/order", params=params) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            (first,) = await asyncio.wait_for(sse_data(lines, 1), 60)
            assert first["order"]["id"] == order.id
            assert first["order"]["fulfillments"][0]["status"] == "FULFILLMENT_STATUS_PREPARING"
            await stack.orders.MarkReadyForPickup(
                api.MarkReadyForPickupRequest(
                    order_id=order.id, fulfillment_id=order.fulfillments[0].id
                ),
                metadata=device(stack),
            )
            (change,) = await asyncio.wait_for(sse_data(lines, 1), 60)
            ready = change["order"]["fulfillments"][0]
            assert ready["status"] == "FULFILLMENT_STATUS_READY_FOR_PICKUP"
            assert ready["pickup"]["pickupCode"] == await _code(stack, placed)
        # A wrong token: a plain 404 before any event; no key at all: refused at the door.
        wrong = await gw.client.get(
            "/v1/stream/order", params=params | {"orderToken": placed.order_token[:-2] + "AA"}
        )
        assert wrong.status_code == 404
        assert wrong.json()["error"]["details"][0]["reason"] == "ORDER_NOT_FOUND"
        keyless = await gw.client.get(
            "/v1/stream/order", params={"orderId": order.id, "orderToken": placed.order_token}
        )
        assert keyless.status_code in (401, 403)


async def test_a_guest_asks_to_return_by_mail_with_her_order_token(stack: Stack) -> None:
    sku = await stack.stock(2, price=1800)
    placed = await picked_up_guest_order(stack, sku, 2)
    order = placed.order
    ask = api.RequestReturnRequest(
        order_id=order.id,
        order_token=placed.order_token,
        lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
        request_id=uuid.uuid4().hex,
    )

    rma = (await stack.orders.RequestReturn(ask, metadata=guest())).return_authorization

    assert rma.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED
    assert rma.ship_to_location_id == STORE  # where she picked it up
    listed = await stack.orders.ListReturnAuthorizations(
        api.ListReturnAuthorizationsRequest(order_id=order.id, order_token=placed.order_token),
        metadata=guest(),
    )
    assert [a.id for a in listed.return_authorizations] == [rma.id]
    wrong = api.RequestReturnRequest()
    wrong.CopyFrom(ask)
    wrong.order_token = placed.order_token[:-2] + "AA"
    wrong.request_id = uuid.uuid4().hex
    await expect_error(
        stack.orders.RequestReturn(wrong, metadata=guest()),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    received = await stack.orders.ReceiveReturn(
        api.ReceiveReturnRequest(number=rma.number, location_id=STORE, request_id=uuid.uuid4().hex),
        metadata=device(stack),
    )
    assert received.return_authorization.order_return.refund.units == 1800


__all__ = ["start_gateway"]  # the gateway tests' fixture, used here
