"""The checkout saga as a state machine: its steps in order, what undoes each, where the
point of no return lies, and how a failure is told to the caller. No I/O.

Every step is persisted before it is taken, so after a crash the saga knows the step that
may have half-happened. Each step's call is idempotent (keyed by the order id), so the
recovery simply takes that step again: it either answers as the first time or fails, and
the saga goes on — forwards, or backwards through the compensations of every step started
(the interrupted one included: it may have taken effect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from services.order.domain.orders import Order, PaymentMethod


class SagaStep(IntEnum):
    """The steps of a checkout, in the order they are taken (values are stored)."""

    FREEZE_CART = 1
    PLAN_FULFILLMENT = 2
    RESERVE_STOCK = 3
    RESERVE_REDEMPTIONS = 4
    #: Holding the cart's points to redeem on the customer service's ledger (nothing to
    #: redeem: nothing held).
    RESERVE_LOYALTY = 5
    AUTHORIZE_PAYMENT = 6
    #: Close the cart at the priced version: the confirmation. Once it succeeded the order
    #: is CONFIRMED and the saga only goes forwards.
    CHECKOUT_CART = 7
    #: Commit the stock (a konbini order's stays reserved until it is paid: see FINISH).
    COMMIT_STOCK = 8
    #: Commit the promotion redemptions, then the loyalty points.
    COMMIT_REDEMPTIONS = 9
    #: Everything committed: PLACED and OrderPlaced, in one transaction. An unpaid konbini
    #: order is parked here (AWAITING_PAYMENT, leased until its deadline); once paid, its
    #: held stock is committed here.
    FINISH = 10


class SagaPhase(StrEnum):
    FORWARD = "forward"
    COMPENSATING = "compensating"
    DONE = "done"


class Compensation(StrEnum):
    RELEASE_STOCK = "release_stock"
    RELEASE_REDEMPTIONS = "release_redemptions"
    RELEASE_LOYALTY = "release_loyalty"
    VOID_PAYMENT = "void_payment"


_UNDO = {
    SagaStep.RESERVE_STOCK: Compensation.RELEASE_STOCK,
    SagaStep.RESERVE_REDEMPTIONS: Compensation.RELEASE_REDEMPTIONS,
    SagaStep.RESERVE_LOYALTY: Compensation.RELEASE_LOYALTY,
    SagaStep.AUTHORIZE_PAYMENT: Compensation.VOID_PAYMENT,
}

FIRST_STEP = SagaStep.FREEZE_CART
CONFIRMATION = SagaStep.CHECKOUT_CART


def next_step(step: SagaStep) -> SagaStep:
    if step is SagaStep.FINISH:
        raise ValueError("FINISH is the last step")
    return SagaStep(step + 1)


def holds_nothing(step: SagaStep, order: Order) -> bool:
    """True when taking ``step`` for ``order`` holds or changes nothing in another service:
    planning (a read), or a step that calls nothing — nothing to redeem, no points, a
    konbini order's stock still held, the last write of an order paid already. Such a step
    is taken right after the step before it and written with it: it cannot have half
    happened, so there is nothing to record before it is taken, and a crash around it
    resumes at that earlier step (taken again: idempotent)."""
    match step:
        case SagaStep.PLAN_FULFILLMENT:
            return True
        case SagaStep.RESERVE_REDEMPTIONS:
            return not order.redeems
        case SagaStep.RESERVE_LOYALTY:
            return not order.totals.loyalty_points
        case SagaStep.COMMIT_STOCK:
            return order.awaits_konbini_payment
        case SagaStep.COMMIT_REDEMPTIONS:
            return not order.redeems and not order.refs.get("points_reservation_id")
        case SagaStep.FINISH:
            # Konbini: parked here until paid, then commits the held stock.
            return order.payment_method is not PaymentMethod.KONBINI
    return False


def confirmed_after(step: SagaStep) -> bool:
    """True once ``step`` is past the confirmation: no compensation any more."""
    return step > CONFIRMATION


def compensations(started: SagaStep) -> list[Compensation]:
    """What undoes a saga whose step ``started`` was begun (maybe taken, maybe not): the
    compensations of that step and every earlier one, latest first."""
    if confirmed_after(started):
        raise ValueError("a confirmed saga is never compensated")
    return [_UNDO[s] for s in reversed(SagaStep) if s <= started and s in _UNDO]


class FailureKind(StrEnum):
    """How a failed step is told to the caller (the gRPC code family)."""

    #: The request cannot succeed as it is (stock, card declined, cart changed ...).
    REJECTED = "rejected"
    #: The cart changed under the checkout: try again after a look at it (ABORTED).
    CONFLICT = "conflict"
    #: A dependency did not answer: try again later (UNAVAILABLE).
    UNAVAILABLE = "unavailable"
    #: The caller may not use this cart (NOT_FOUND, as for a cart that does not exist).
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class StepFailure(Exception):
    """A step failed for good: the saga compensates and the caller learns ``reason``."""

    step: SagaStep
    kind: FailureKind
    reason: str
    message: str
    #: What the caller needs to act on it (e.g. the ``location_id`` whose capacity is
    #: used up); kept with the failure, so a retry gets the same answer.
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.step.name}: {self.reason}"


class StepUnavailable(Exception):
    """A step's dependency did not answer in time: the step may be retried (it is
    idempotent) or, after its retries, fail with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
