"""Earning from orders: what an order earns, its return window, proportional reversal on a
return. No I/O.

Invariants:

* an order earns once (its id is the earning's key), a return reverses once (its id);
* while the return window is open the points are ``pending``: shown, never spendable, not
  in the balance; after it they become one EARN entry of ``points - reversed``;
* returns reverse proportionally to what they refund, computed on the running total
  (``points * returned / total`` rounded down, less what was reversed before), so several
  partial returns never reverse more, nor by rounding less, than one return of the same sum.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from . import invalid

#: What an order event may carry at most (bounds a malformed event, not a rule of trade).
MAX_ORDER_YEN = 1_000_000_000
MAX_ID = 128


class EarningState(IntEnum):
    PENDING = 1
    AVAILABLE = 2
    CANCELLED = 3


@dataclass(frozen=True)
class OrderFacts:
    """What customer learns of a placed order."""

    order_id: str
    order_number: str
    customer_id: uuid.UUID
    channel: int
    store_id: str | None
    total_yen: int
    units: int
    placed_at: datetime


@dataclass(frozen=True)
class ReturnFacts:
    """What customer learns of a return: the refunded amount, or else the units returned
    (the proportion is then by units)."""

    return_id: str
    order_id: str
    customer_id: uuid.UUID
    refund_yen: int | None
    units: int
    received_at: datetime


@dataclass(frozen=True)
class Earning:
    order_id: str
    customer_id: uuid.UUID
    state: EarningState
    points: int
    bonus_points: int
    reversed: int
    channel: int
    store_id: str | None
    tier: str
    available_at: datetime
    created_at: datetime
    entry_id: uuid.UUID | None = None
    entry_points: int | None = None

    @property
    def open_points(self) -> int:
        """What the order still earns."""
        return self.points - self.reversed

    @property
    def reversed_in_ledger(self) -> int:
        """Points returns took from the EARN entry (after it became available)."""
        if self.entry_points is None:
            return 0
        return self.reversed - (self.points - self.entry_points)


@dataclass(frozen=True)
class OrderRecord:
    """The projection's row of one order."""

    order_id: str
    customer_id: uuid.UUID
    order_number: str
    channel: int
    store_id: str | None
    total_yen: int
    units: int
    returned_yen: int
    returned_units: int
    cancelled: bool
    placed_at: datetime

    @property
    def spend_yen(self) -> int:
        return 0 if self.cancelled else max(self.total_yen - self.returned_yen, 0)


def check_order_id(value: str, path: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_ID:
        raise invalid(path, f"1 to {MAX_ID} characters", "INVALID_ORDER_EVENT")
    return cleaned


def order_yen(currency: str, units: int, nanos: int, path: str) -> int:
    """Whole yen of an event's Money (JPY has no minor unit)."""
    if currency != "JPY":
        raise invalid(f"{path}.currency_code", "must be JPY", "CURRENCY_NOT_SUPPORTED")
    if nanos != 0 or units < 0 or units > MAX_ORDER_YEN:
        raise invalid(path, f"whole yen between 0 and {MAX_ORDER_YEN}", "INVALID_AMOUNT")
    return units


def returned_share(points: int, order: OrderRecord) -> int:
    """The part of ``points`` that what ``order`` shows returned in total so far takes back,
    rounded down: by the refunded yen, or without a total by the units."""
    if order.total_yen > 0:
        share = (points * min(order.returned_yen, order.total_yen)) // order.total_yen
    elif order.units > 0:
        share = (points * min(order.returned_units, order.units)) // order.units
    else:
        share = 0
    return min(share, points)


def reversal_for(earning: Earning, order: OrderRecord) -> int:
    """Points to reverse now that ``order`` shows what was returned in total so far."""
    return max(returned_share(earning.points, order) - earning.reversed, 0)
