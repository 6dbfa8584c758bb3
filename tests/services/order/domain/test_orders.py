"""Order rules: transitions, payment choices, what a cart must be to become an order."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from services.order.domain.orders import (
    FrozenCart,
    Fulfillment,
    FulfillmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentState,
    Totals,
    check_cart,
    check_guest_contact,
    check_payment,
    normal_phone,
)
from tenpo.kit.errors import Aborted, DomainError, FailedPrecondition, InvalidArgument, NotFound

LINE = OrderLine("SKU-1", "p1", "シャツ", 1, 1000, 0, 1000)
CART = FrozenCart(
    cart_id="c1",
    etag="v3",
    customer_id="cust-1",
    active=True,
    channel=2,
    store_id=None,
    currency="JPY",
    lines=(LINE,),
    fulfillment=Fulfillment(FulfillmentMethod.PICKUP, "tokyo-shibuya"),
    totals=Totals(1000, 0, 0, 1000),
    has_price_changes=False,
    all_offered=True,
)


def order(status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(uuid.uuid4(), "T-000001", "cust-1", "c1", "v3", status, PaymentMethod.CARD)


def test_an_order_moves_only_forwards() -> None:
    placed = order().confirm().place()
    assert placed.status is OrderStatus.PLACED
    with pytest.raises(FailedPrecondition):
        order().place()
    with pytest.raises(FailedPrecondition):
        placed.fail("X")
    assert order().fail("PAYMENT_DECLINED").failure_reason == "PAYMENT_DECLINED"


def test_only_a_placed_order_not_yet_captured_can_be_cancelled() -> None:
    with pytest.raises(FailedPrecondition):
        order().cancel("x")
    captured = order(OrderStatus.PLACED).with_payment(PaymentState.CAPTURED)
    with pytest.raises(FailedPrecondition):
        captured.cancel("x")
    cancelled = order(OrderStatus.PLACED).cancel("CANCELLED_BY_CUSTOMER")
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.cancel("again") is cancelled


@pytest.mark.parametrize(
    ("method", "card", "reason"),
    [
        (None, "", "PAYMENT_METHOD_REQUIRED"),
        (PaymentMethod.CARD, "", "CARD_TOKEN_REQUIRED"),
        (PaymentMethod.CARD, "x" * 65, "CARD_TOKEN_REQUIRED"),
        (PaymentMethod.PAY_AT_STORE, "4242", "CARD_TOKEN_UNEXPECTED"),
    ],
)
def test_bad_payments_are_refused(method: PaymentMethod | None, card: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_payment(method, card)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("cart", "etag", "error", "reason"),
    [
        (replace(CART, customer_id="someone-else"), "v3", NotFound, "CART_NOT_FOUND"),
        (replace(CART, active=False), "v3", FailedPrecondition, "CART_NOT_ACTIVE"),
        (CART, "v2", Aborted, "CART_CHANGED"),
        (replace(CART, lines=()), "v3", FailedPrecondition, "CART_EMPTY"),
        (replace(CART, fulfillment=None), "v3", FailedPrecondition, "FULFILLMENT_REQUIRED"),
        (replace(CART, all_offered=False), "v3", FailedPrecondition, "LINE_NOT_OFFERED"),
        (replace(CART, has_price_changes=True), "v3", Aborted, "PRICE_CHANGED"),
    ],
)
def test_a_cart_that_cannot_become_an_order_says_why(
    cart: FrozenCart, etag: str, error: type[DomainError], reason: str
) -> None:
    with pytest.raises(error) as caught:
        check_cart(cart, customer_id="cust-1", etag=etag, method=PaymentMethod.CARD)
    assert caught.value.reason == reason


def test_pay_at_store_needs_an_in_store_fulfilment() -> None:
    delivery = replace(CART, fulfillment=Fulfillment(FulfillmentMethod.DELIVERY))
    with pytest.raises(FailedPrecondition) as caught:
        check_cart(delivery, customer_id="cust-1", etag="v3", method=PaymentMethod.PAY_AT_STORE)
    assert caught.value.reason == "PAY_AT_STORE_NOT_ALLOWED"
    check_cart(CART, customer_id="cust-1", etag="v3", method=PaymentMethod.PAY_AT_STORE)


def test_a_guest_phone_typed_full_width_is_the_same_number() -> None:
    """Found from outside: a guest checkout with the phone "０９０１２３４５６７８" (a
    Japanese IME in full-width mode) was refused CONTACT_INVALID, although the field takes
    "any notation"; staff searching by it would not have found the order either."""
    assert check_guest_contact("", "０９０－１２３４－５６７８") == (None, "09012345678")
    assert normal_phone("＋８１ ９０ １２３４ ５６７８") == normal_phone("+81 90-1234-5678")
    with pytest.raises(InvalidArgument):
        check_guest_contact("", "abc")
