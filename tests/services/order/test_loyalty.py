"""The saga's loyalty step against the real customer service: the cart's points to redeem
are held, redeemed at the confirmation, given back when the checkout fails; the payment
covers only what the points leave; the customer service down ends the checkout at once."""

from __future__ import annotations

import uuid

import grpc
import pytest
import sqlalchemy as sa

from services.customer.app import definition as customer_definition
from services.order.domain.orders import PaymentMethod
from services.order.upstream import LoyaltyClient
from services.order.usecases.checkout import Checkout
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import Unavailable
from tenpo.kit.server import running
from tenpo.kit.service_token import StaticToken
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import gateway_channel
from tests.services.order.conftest import OK_CARD, SERVICE_SCOPES, Stack
from tests.services.order.test_checkout import expect_error

pytestmark = pytest.mark.integration


def _staff(stack: Stack) -> tuple[tuple[str, str], ...]:
    return stack.tokens.metadata(
        stack.tokens.mint(
            subject="staff-1", kind="staff", scopes=["loyalty:write"], channel="BACK_OFFICE"
        )
    )


async def _member(stack: Stack, points: int) -> str:
    """A registered customer with ``points`` to spend."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.customer_host.port}") as channel:
        registered = await identity_service_pb2_grpc.IdentityServiceStub(channel).Register(
            identity_service_pb2.RegisterRequest(
                email=f"member.{uuid.uuid4().hex[:10]}@example.jp",
                password="correct horse battery",
                name=resources_pb2.PersonName(family_name="山田", given_name="花子"),
                locale="ja-JP",
            ),
            metadata=gateway_channel("APP"),
        )
    customer_id = registered.customer.id
    if points:
        await stack.loyalty.AdjustPoints(
            loyalty_api.AdjustPointsRequest(
                customer_id=customer_id, points=points, reason="test grant"
            ),
            metadata=_staff(stack),
        )
    return customer_id


async def _redeeming(stack: Stack, customer: str, sku: str, points: int) -> cart_pb.Cart:
    cart = await stack.cart(customer, (sku, 1))
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(id=cart.id, etag=cart.etag, loyalty_points_to_redeem=points)
    )
    update.update_mask.paths.append("loyalty_points_to_redeem")
    return (await stack.carts.UpdateCart(update, metadata=stack.customer(customer))).cart


async def _balance(stack: Stack, customer: str) -> tuple[int, int]:
    got = await stack.loyalty.GetBalance(
        loyalty_api.GetBalanceRequest(customer_id=customer), metadata=_staff_reader(stack)
    )
    return got.balance.balance, got.balance.reserved


def _staff_reader(stack: Stack) -> tuple[tuple[str, str], ...]:
    return stack.tokens.metadata(
        stack.tokens.mint(
            subject="staff-1", kind="staff", scopes=["customers:read"], channel="BACK_OFFICE"
        )
    )


async def test_points_are_redeemed_and_the_card_pays_the_rest(stack: Stack) -> None:
    sku = await stack.stock(3, price=1500)
    customer = await _member(stack, 1000)
    cart = await _redeeming(stack, customer, sku, 600)

    placed = (
        await stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer))
    ).order

    assert placed.status == pb.ORDER_STATUS_PLACED
    assert placed.totals.loyalty_points == 600
    assert placed.totals.amount_due.units == placed.totals.total.units - 600
    assert await _balance(stack, customer) == (400, 0)  # redeemed, not just held
    async with stack.order_db.unit_of_work() as uow:
        authorized = await uow.session.scalar(
            sa.text("SELECT amount FROM sandbox_payments WHERE key = :k"),
            {"k": f"{placed.id}:authorize"},
        )
    assert authorized == placed.totals.total.units - 600


async def test_a_declined_card_gives_the_held_points_back(stack: Stack) -> None:
    sku = await stack.stock(3, price=1500)
    customer = await _member(stack, 1000)
    cart = await _redeeming(stack, customer, sku, 600)

    await expect_error(
        stack.orders.PlaceOrder(
            stack.place_request(cart, card="4000000000000002"), metadata=stack.customer(customer)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_DECLINED",
    )

    assert await _balance(stack, customer) == (1000, 0)
    assert await stack.atp(sku) == 3


async def test_too_few_points_fail_the_checkout_and_release_the_stock(stack: Stack) -> None:
    sku = await stack.stock(3, price=1500)
    customer = await _member(stack, 100)
    cart = await _redeeming(stack, customer, sku, 600)

    await expect_error(
        stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )

    assert await _balance(stack, customer) == (100, 0)
    assert await stack.atp(sku) == 3
    listed = await stack.orders.ListOrders(
        api.ListOrdersRequest(statuses=[pb.ORDER_STATUS_FAILED]),
        metadata=stack.customer(customer),
    )
    assert await stack.sandbox_state(listed.orders[0].id) == "none"  # never authorized


async def test_a_stopped_customer_service_ends_the_checkout_unavailable(stack: Stack) -> None:
    sku = await stack.stock(3, price=1500)
    customer = await _member(stack, 1000)
    cart = await _redeeming(stack, customer, sku, 600)
    # A second real customer service, started and stopped: its address answers nothing.
    assert stack.customer_host.runtime is not None
    async with running(customer_definition, stack.customer_host.runtime.settings) as gone:
        target = f"127.0.0.1:{gone.port}"
    live = stack.checkout
    token = StaticToken(
        stack.tokens.mint(subject="order-service", kind="service", scopes=SERVICE_SCOPES)
    )
    async with grpc.aio.insecure_channel(target) as dead:
        checkout = Checkout(
            live.db,
            live.cart,
            live.inventory,
            live.payments,
            live.policy,
            loyalty=LoyaltyClient(dead, token, 2.0),
        )
        request = stack.place_request(cart)
        with pytest.raises(Unavailable) as caught:
            await checkout.place(
                Principal(PrincipalKind.CUSTOMER, customer, channel=common_pb2.CHANNEL_APP),
                cart_id=cart.id,
                cart_etag=cart.etag,
                method=PaymentMethod.CARD,
                card_token=OK_CARD,
                request_id=request.request_id,
                request=request,
            )

    assert caught.value.reason == "CUSTOMER_UNAVAILABLE"
    assert await stack.atp(sku) == 3  # the stock is released at once
    assert await _balance(stack, customer) == (1000, 0)
    still = (
        await stack.carts.GetCart(
            cart_api.GetCartRequest(cart_id=cart.id), metadata=stack.customer(customer)
        )
    ).cart
    assert still.status == cart_pb.CART_STATUS_ACTIVE
    # The points hold (if the lost call made one) is released once the service is back:
    # the sweeper takes the compensation again; then the retry the answer asked for (the
    # same request_id) is a new attempt, which places the order and spends the points once.
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE orders SET lease_until = now() - interval '1 second' WHERE cart_id = :c"
            ),
            {"c": cart.id},
        )
        await uow.commit()
    assert await live.sweep_once() >= 1
    listed = await stack.orders.ListOrders(
        api.ListOrdersRequest(statuses=[pb.ORDER_STATUS_FAILED]),
        metadata=stack.customer(customer),
    )
    assert [o.failure_reason for o in listed.orders] == ["CUSTOMER_UNAVAILABLE"]
    placed = (await stack.orders.PlaceOrder(request, metadata=stack.customer(customer))).order
    assert placed.status == pb.ORDER_STATUS_PLACED
    again = (await stack.orders.PlaceOrder(request, metadata=stack.customer(customer))).order
    assert again.id == placed.id
    assert await _balance(stack, customer) == (400, 0)
    assert await stack.atp(sku) == 2
