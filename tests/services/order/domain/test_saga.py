"""The saga's state machine: step order, what undoes what, the point of no return."""

from __future__ import annotations

import pytest

from services.order.domain.saga import (
    CONFIRMATION,
    Compensation,
    SagaStep,
    compensations,
    confirmed_after,
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
