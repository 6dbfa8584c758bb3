"""The saga's state machine: step order, what undoes what, the point of no return."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from services.order.domain.orders import (
    FrozenCart,
    Order,
    OrderStatus,
    PaymentMethod,
    Totals,
)
from services.order.domain.saga import (
    CONFIRMATION,
    Compensation,
    SagaStep,
    compensations,
    confirmed_after,
    holds_nothing,
    next_step,
)


def test_steps_run_in_the_documented_order() -> None:
    step = SagaStep.FREEZE_CART
    seen = [step]
    while step is not SagaStep.FINISH:
        step = next_step(step)
        seen.append(step)
    assert seen == [
        SagaStep.FREEZE_CART,
        SagaStep.PLAN_FULFILLMENT,
        SagaStep.RESERVE_STOCK,
        SagaStep.RESERVE_REDEMPTIONS,
        SagaStep.RESERVE_LOYALTY,
        SagaStep.AUTHORIZE_PAYMENT,
        SagaStep.CHECKOUT_CART,
        SagaStep.COMMIT_STOCK,
        SagaStep.COMMIT_REDEMPTIONS,
        SagaStep.FINISH,
    ]
    with pytest.raises(ValueError, match="last step"):
        next_step(SagaStep.FINISH)


def test_compensation_undoes_every_started_step_latest_first() -> None:
    assert compensations(SagaStep.FREEZE_CART) == []
    assert compensations(SagaStep.PLAN_FULFILLMENT) == []
    # The interrupted step itself may have taken effect: it is undone too.
    assert compensations(SagaStep.RESERVE_STOCK) == [Compensation.RELEASE_STOCK]
    assert compensations(SagaStep.CHECKOUT_CART) == [
        Compensation.VOID_PAYMENT,
        Compensation.RELEASE_LOYALTY,
        Compensation.RELEASE_REDEMPTIONS,
        Compensation.RELEASE_STOCK,
    ]


def test_after_the_confirmation_nothing_is_compensated() -> None:
    assert CONFIRMATION is SagaStep.CHECKOUT_CART
    assert not confirmed_after(SagaStep.CHECKOUT_CART)
    assert confirmed_after(SagaStep.COMMIT_STOCK)
    with pytest.raises(ValueError, match="never compensated"):
        compensations(SagaStep.COMMIT_STOCK)


def _order(
    method: PaymentMethod = PaymentMethod.CARD,
    *,
    redeems: bool,
    points: int = 0,
    refs: dict[str, str] | None = None,
) -> Order:
    cart = FrozenCart(
        cart_id="c",
        etag="e",
        customer_id="cust",
        active=True,
        channel=1,
        store_id=None,
        currency="JPY",
        lines=(),
        fulfillment=None,
        totals=Totals(1000, 0, 0, 1000, loyalty_points=points),
        has_price_changes=False,
        all_offered=True,
        redeems=redeems,
    )
    order = Order(
        id=uuid.uuid4(),
        number="T-000001",
        customer_id="cust",
        cart_id="c",
        cart_etag="e",
        status=OrderStatus.PENDING,
        payment_method=method,
    ).frozen_from(cart)
    return replace(order, refs=order.refs | (refs or {}))


def test_steps_that_hold_nothing_for_an_order_without_codes_or_points() -> None:
    plain = _order(redeems=False)
    assert [s for s in SagaStep if holds_nothing(s, plain)] == [
        SagaStep.PLAN_FULFILLMENT,
        SagaStep.RESERVE_REDEMPTIONS,
        SagaStep.RESERVE_LOYALTY,
        SagaStep.COMMIT_REDEMPTIONS,
        SagaStep.FINISH,
    ]


def test_codes_and_points_make_their_steps_call() -> None:
    coded = _order(redeems=True)
    assert not holds_nothing(SagaStep.RESERVE_REDEMPTIONS, coded)
    assert not holds_nothing(SagaStep.COMMIT_REDEMPTIONS, coded)
    points = _order(redeems=False, points=300, refs={"points_reservation_id": "r-1"})
    assert not holds_nothing(SagaStep.RESERVE_LOYALTY, points)
    assert not holds_nothing(SagaStep.COMMIT_REDEMPTIONS, points)


def test_a_saga_recorded_before_the_redemption_fact_was_kept_still_calls() -> None:
    # No "redeems" ref (an earlier release froze the cart): assumed to redeem.
    order = _order(redeems=False)
    older = replace(order, refs={k: v for k, v in order.refs.items() if k != "redeems"})
    assert older.redeems
    assert not holds_nothing(SagaStep.RESERVE_REDEMPTIONS, older)


def test_konbini_commits_and_finishes_by_calling() -> None:
    konbini = _order(PaymentMethod.KONBINI, redeems=False)
    # Its stock stays held while it waits: nothing to commit at COMMIT_STOCK ...
    assert holds_nothing(SagaStep.COMMIT_STOCK, konbini)
    # ... FINISH parks it or commits the stock once paid.
    assert not holds_nothing(SagaStep.FINISH, konbini)
    assert not holds_nothing(SagaStep.COMMIT_STOCK, _order(redeems=False))
    for step in (SagaStep.FREEZE_CART, SagaStep.RESERVE_STOCK):
        assert not holds_nothing(step, _order(redeems=False))
    assert not holds_nothing(SagaStep.AUTHORIZE_PAYMENT, _order(redeems=False))
    assert not holds_nothing(SagaStep.CHECKOUT_CART, _order(redeems=False))
