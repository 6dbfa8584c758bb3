"""Konbini payments: the order waits for the money with a payment number and a deadline,
its stock held; paid → PLACED (stock sold, OrderPlaced); deadline passed → the sweeper
cancels it, releasing the stock and giving the points and the promotion code back, with
OrderCancelled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_loyalty import _balance, _member, _redeeming

pytestmark = pytest.mark.integration


def _konbini(request: api.PlaceOrderRequest) -> api.PlaceOrderRequest:
    request.payment.CopyFrom(pb.Payment(method=pb.PAYMENT_METHOD_KONBINI))
    return request


def _notifier(stack: Stack) -> tuple[tuple[str, str], ...]:
    """The service relaying the konbini network's notifications."""
    return stack.tokens.metadata(
        stack.tokens.mint(subject="konbini-gateway", kind="service", scopes=["orders:write"])
    )


async def _record(stack: Stack, number: str) -> pb.Order:
    recorded = await stack.orders.RecordKonbiniPayment(
        api.RecordKonbiniPaymentRequest(payment_number=number), metadata=_notifier(stack)
    )
    return recorded.order


async def _events(stack: Stack, kind: type, order_id: str) -> list[object]:
    found = [kind.FromString(p) for p in await stack.outbox_events(kind.__name__)]
    return [e for e in found if e.order_id == order_id]


async def test_a_konbini_order_waits_for_its_money_then_is_placed(stack: Stack) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(customer, (sku, 1))

    waiting = (
        await stack.orders.PlaceOrder(
            _konbini(stack.place_request(cart, card="")), metadata=stack.customer(customer)
        )
    ).order

    assert waiting.status == pb.ORDER_STATUS_AWAITING_PAYMENT
    assert waiting.payment_state == pb.PAYMENT_STATE_AWAITING_PAYMENT
    number = waiting.konbini.payment_number
    assert len(number) == 12 and number.isdigit()
    deadline = waiting.konbini.deadline.ToDatetime(tzinfo=UTC)
    assert timedelta(hours=71) < deadline - datetime.now(UTC) <= timedelta(hours=72)
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (3, 1)  # held, not sold
    assert await _events(stack, ev.OrderPlaced, waiting.id) == []

    placed = await _record(stack, number)

    assert placed.status == pb.ORDER_STATUS_PLACED
    assert placed.payment_state == pb.PAYMENT_STATE_CAPTURED
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (2, 0)  # sold once
    assert len(await _events(stack, ev.OrderPlaced, waiting.id)) == 1
    again = await _record(stack, number)  # the network notifies twice: one sale
    assert (again.id, again.status) == (placed.id, pb.ORDER_STATUS_PLACED)
    assert (await stack.level(sku)).on_hand == 2
    assert len(await _events(stack, ev.OrderPlaced, waiting.id)) == 1


async def test_an_unpaid_konbini_order_is_cancelled_at_its_deadline(stack: Stack) -> None:
    sku = await stack.stock(3, price=1500)
    customer = await _member(stack, 1000)
    cart = await _redeeming(stack, customer, sku, 500)
    waiting = (
        await stack.orders.PlaceOrder(
            _konbini(stack.place_request(cart, card="")), metadata=stack.customer(customer)
        )
    ).order
    assert waiting.status == pb.ORDER_STATUS_AWAITING_PAYMENT
    assert await _balance(stack, customer) == (500, 0)  # redeemed at the confirmation
    # The deadline passes (both clocks: the konbini network's and the saga's lease).
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE konbini_payments SET deadline = now() - interval '1 second'"
                " WHERE number = :n"
            ),
            {"n": waiting.konbini.payment_number},
        )
        await uow.session.execute(
            sa.text("UPDATE orders SET lease_until = now() - interval '1 second' WHERE id = :i"),
            {"i": waiting.id},
        )
        await uow.commit()

    assert await stack.checkout.sweep_once() >= 1

    got = (
        await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=waiting.id), metadata=stack.customer(customer)
        )
    ).order
    assert (got.status, got.failure_reason) == (
        pb.ORDER_STATUS_CANCELLED,
        "KONBINI_PAYMENT_EXPIRED",
    )
    assert got.payment_state == pb.PAYMENT_STATE_VOIDED
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (3, 0)
    assert await _balance(stack, customer) == (1000, 0)  # the points came back
    cancelled = await _events(stack, ev.OrderCancelled, waiting.id)
    assert [e.reason for e in cancelled] == ["KONBINI_PAYMENT_EXPIRED"]  # type: ignore[attr-defined]
    # Money that comes too late is refused (the network returns it to the customer).
    await expect_error(
        _record(stack, waiting.konbini.payment_number),
        grpc.StatusCode.FAILED_PRECONDITION,
        "KONBINI_PAYMENT_EXPIRED",
    )
    assert await stack.checkout.sweep_once() == 0  # nothing left to do


async def test_konbini_requests_are_checked(stack: Stack) -> None:
    sku = await stack.stock(1)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(customer, (sku, 1))

    await expect_error(
        stack.orders.PlaceOrder(
            _konbini(stack.place_request(cart, card="")).__class__(
                cart_id=cart.id,
                cart_etag=cart.etag,
                payment=pb.Payment(method=pb.PAYMENT_METHOD_KONBINI, card_token="4242"),
                request_id=uuid.uuid4().hex,
            ),
            metadata=stack.customer(customer),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CARD_TOKEN_UNEXPECTED",
    )
    await expect_error(
        _record(stack, "12ab"), grpc.StatusCode.INVALID_ARGUMENT, "PAYMENT_NUMBER_INVALID"
    )
    await expect_error(
        _record(stack, "000000000000"), grpc.StatusCode.NOT_FOUND, "PAYMENT_NUMBER_NOT_FOUND"
    )
    # Only staff or services record payments; a customer cannot pay by saying so.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.orders.RecordKonbiniPayment(
            api.RecordKonbiniPaymentRequest(payment_number="000000000000"),
            metadata=stack.customer(customer),
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert (await stack.level(sku)).reserved == 0


async def _with_code(stack: Stack, customer: str, cart_id: str, code: str) -> cart_pb.Cart:
    applied = await stack.carts.ApplyPromotionCode(
        cart_api.ApplyPromotionCodeRequest(cart_id=cart_id, code=code),
        metadata=stack.customer(customer),
    )
    return applied.cart


async def test_an_expired_konbini_order_gives_its_personal_code_back(stack: Stack) -> None:
    sku = await stack.stock(3, price=4000)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(stack.targets["cart"]) as channel:
        promotions = promotion_service_pb2_grpc.PromotionServiceStub(channel)
        writer = stack.tokens.metadata(
            stack.tokens.mint(subject="journeys", kind="service", scopes=["promotions:write"])
        )
        promotion = (
            await promotions.CreatePromotion(
                promo_api.CreatePromotionRequest(
                    promotion=cart_pb.Promotion(
                        title="Welcome 10 %",
                        trigger=cart_pb.PROMOTION_TRIGGER_CODE,
                        kind=cart_pb.DISCOUNT_KIND_PERCENT,
                        percent_off=10,
                        active=True,
                    )
                ),
                metadata=stack.tokens.metadata(
                    stack.tokens.mint(subject="merch", kind="staff", scopes=["promotions:write"])
                ),
            )
        ).promotion
        code = (
            await promotions.IssuePersonalCode(
                promo_api.IssuePersonalCodeRequest(promotion_id=promotion.id, customer_id=customer),
                metadata=writer,
            )
        ).code
    cart = await stack.cart(customer, (sku, 1))
    cart = await _with_code(stack, customer, cart.id, code)
    assert cart.totals.discount.units == 400
    waiting = (
        await stack.orders.PlaceOrder(
            _konbini(stack.place_request(cart, card="")), metadata=stack.customer(customer)
        )
    ).order
    assert waiting.status == pb.ORDER_STATUS_AWAITING_PAYMENT
    # Used by the waiting order: a second cart cannot take it.
    second = await stack.cart(customer, (sku, 1))
    with pytest.raises(grpc.aio.AioRpcError) as used:
        await _with_code(stack, customer, second.id, code)
    assert decode_error(used.value).reason == "CODE_ALREADY_USED"

    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE konbini_payments SET deadline = now() - interval '1 second'"
                " WHERE number = :n"
            ),
            {"n": waiting.konbini.payment_number},
        )
        await uow.session.execute(
            sa.text("UPDATE orders SET lease_until = now() - interval '1 second' WHERE id = :i"),
            {"i": waiting.id},
        )
        await uow.commit()
    assert await stack.checkout.sweep_once() >= 1

    # Cancelled unpaid: the code is hers again, and the next order redeems it.
    second = await _with_code(stack, customer, second.id, code)
    assert second.totals.discount.units == 400
    placed = (
        await stack.orders.PlaceOrder(
            stack.place_request(second), metadata=stack.customer(customer)
        )
    ).order
    assert placed.status == pb.ORDER_STATUS_PLACED
    assert placed.totals.discount.units == 400
