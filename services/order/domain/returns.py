"""Returns domain: which units of an order may come back, within which window, and what is
refunded for them. No I/O.

Invariants:
- Only units whose goods left (shipped, delivered, picked up, handed over) come back, and
  each unit at most once: the units of every return recorded so far, pending ones included,
  and of every open return authorization (a parcel on its way) are no longer returnable.
- A refund is the returned units' share of what was paid (their line totals, discounts
  included), never more than what was captured and not yet refunded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from services.order.domain.fulfilments import (
    CaptureState,
    FulfillmentLine,
    Fulfilment,
    line_weight,
)
from services.order.domain.orders import Order, OrderStatus
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument

MAX_RETURN_LINES = 100


class ReturnStatus(IntEnum):
    PENDING = 1
    COMPLETED = 2


@dataclass(frozen=True)
class OrderReturn:
    id: uuid.UUID
    order_id: uuid.UUID
    store_id: str
    lines: tuple[FulfillmentLine, ...]
    refund: int
    status: ReturnStatus
    created_at: datetime | None = None
    #: The return authorization it received (a return by mail); None at a store.
    authorization_id: uuid.UUID | None = None


def returnable(
    fulfilments: Iterable[Fulfilment],
    returns: Iterable[OrderReturn],
    held: Iterable[Sequence[FulfillmentLine]] = (),
) -> dict[str, int]:
    """Units per SKU that may still come back; ``held``: the lines of open return
    authorizations (their parcels may still arrive)."""
    units: dict[str, int] = {}
    for fulfilment in fulfilments:
        if fulfilment.left:
            for line in fulfilment.lines:
                units[line.sku] = units.get(line.sku, 0) + line.quantity
    for previous in returns:
        for line in previous.lines:
            units[line.sku] = units.get(line.sku, 0) - line.quantity
    for lines in held:
        for line in lines:
            units[line.sku] = units.get(line.sku, 0) - line.quantity
    return {sku: n for sku, n in units.items() if n > 0}


def check_return_lines(lines: Sequence[FulfillmentLine]) -> tuple[FulfillmentLine, ...]:
    """The units asked for, merged per SKU; malformed input refused before any lookup."""
    if not lines or len(lines) > MAX_RETURN_LINES:
        raise InvalidArgument(
            "name the units brought back",
            reason="RETURN_LINES_INVALID",
            field_violations=[FieldViolation("lines", f"1-{MAX_RETURN_LINES} lines")],
        )
    merged: dict[str, int] = {}
    for index, line in enumerate(lines):
        if not line.sku or len(line.sku) > 64 or not 0 < line.quantity <= 10_000:
            raise InvalidArgument(
                "a return line is a SKU and 1 unit or more",
                reason="RETURN_LINES_INVALID",
                field_violations=[FieldViolation(f"lines[{index}]", "a SKU, 1-10000 units")],
            )
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    return tuple(FulfillmentLine(sku, units) for sku, units in sorted(merged.items()))


def check_lines_of_order(order: Order, lines: Sequence[FulfillmentLine]) -> None:
    """The request's lines (as sent, before merging) name SKUs of the order, never more
    units of one than were ordered: a bad line is named before the order's state or the
    window is judged."""
    ordered: dict[str, int] = {}
    for bought in order.lines:
        ordered[bought.sku] = ordered.get(bought.sku, 0) + bought.quantity
    asked: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line.sku not in ordered:
            raise _bad_line(f"lines[{index}].sku", "not a SKU of this order")
        asked[line.sku] = asked.get(line.sku, 0) + line.quantity
        if asked[line.sku] > ordered[line.sku]:
            raise _bad_line(
                f"lines[{index}].quantity", f"at most {ordered[line.sku]} units were ordered"
            )


def _bad_line(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        "a return line does not match the order",
        reason="RETURN_LINES_INVALID",
        field_violations=[FieldViolation(field, description)],
    )


def plan_return(
    order: Order,
    fulfilments: Sequence[Fulfilment],
    previous: Sequence[OrderReturn],
    lines: tuple[FulfillmentLine, ...],
    now: datetime,
    window: timedelta,
    held: Sequence[Sequence[FulfillmentLine]] = (),
) -> int:
    """The refund of a return of ``lines`` asked for at ``now``, or why it cannot be.
    ``held``: the lines of open return authorizations, not returnable meanwhile."""
    if order.status not in (OrderStatus.PLACED, OrderStatus.COMPLETED):
        raise FailedPrecondition(
            f"a {order.status.name.lower()} order has nothing to return",
            reason="ORDER_NOT_RETURNABLE",
            metadata={"status": order.status.name},
        )
    if order.created_at is not None and now > order.created_at + window:
        raise FailedPrecondition(
            f"returns are accepted within {window.days} days of the purchase",
            reason="RETURN_WINDOW_EXPIRED",
        )
    open_units = returnable(fulfilments, previous, held)
    for line in lines:
        if line.quantity > open_units.get(line.sku, 0):
            raise FailedPrecondition(
                "more units than were handed over and not returned or on their way back",
                reason="NOT_RETURNABLE",
                metadata={"sku": line.sku, "returnable": str(open_units.get(line.sku, 0))},
            )
    captured = sum(f.amount for f in fulfilments if f.capture_state is CaptureState.CAPTURED)
    refunded = sum(r.refund for r in previous)
    return max(0, min(line_weight(order, lines), captured - refunded))
