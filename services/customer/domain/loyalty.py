"""Loyalty domain: the points ledger's rules, earn rules, oldest-first spending. No I/O.

Invariants (the store enforces them in PostgreSQL, these functions decide):

* the ledger with its reservations is ``domain/ledger.py``'s shape: append-only, the
  balance is the sum of its entries' points, a reservation never holds more than is
  available at that moment (concurrent redemptions never overdraw);
* positive entries are lots with ``remaining`` points; spending and expiry take the oldest
  lots first; a reversal takes back the whole lot, even if the balance turns negative
  (recorded, not hidden).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition, InvalidArgument, NotFound

from . import invalid, ledger

LOYALTY_WRITE_SCOPE = "loyalty:write"
#: One change of one account is bounded, so a typo cannot mint billions of points.
MAX_POINTS_PER_ENTRY = 10_000_000
MAX_REFERENCE = 128
MAX_REASON = 200
#: Earn rules work on whole yen; JPY has no minor unit.
EARN_CURRENCY = "JPY"
MAX_EARN_YEN = 1_000_000_000


class LedgerEntryKind(IntEnum):
    """Mirrors tenpo.customer.v1.LedgerEntryKind."""

    EARN = 1
    REDEEM = 2
    EXPIRE = 3
    REVERSE = 4
    ADJUST = 5


class ReservationState(IntEnum):
    """Mirrors tenpo.customer.v1.ReservationState."""

    HELD = 1
    COMMITTED = 2
    RELEASED = 3


#: Kinds whose positive entries are lots that can be spent, expire and be reversed.
LOT_KINDS = frozenset({LedgerEntryKind.EARN, LedgerEntryKind.ADJUST})


@dataclass(frozen=True)
class Account:
    customer_id: uuid.UUID
    balance: int
    reserved: int
    tier: str
    version: int
    updated_at: datetime | None
    pending: int = 0
    tier_keep_until: datetime | None = None
    twelve_month_spend: int = 0

    @property
    def available(self) -> int:
        return max(self.balance - self.reserved, 0)


def empty_account(customer_id: uuid.UUID) -> Account:
    return Account(customer_id, 0, 0, DEFAULT_TIER, 0, None)


@dataclass(frozen=True)
class Entry:
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: LedgerEntryKind
    points: int
    channel: int
    store_id: str | None
    request_id: str
    reference: str
    created_at: datetime
    expires_at: datetime | None = None
    reverses: uuid.UUID | None = None
    remaining: int = 0


@dataclass(frozen=True)
class Lot:
    """An open positive entry: what is left of it, and when it expires."""

    entry_id: uuid.UUID
    remaining: int


#: A hold of points (``ReservePoints``): the ledger's generic hold, its amount in points.
Reservation = ledger.Hold
Origin = ledger.Origin

POINTS = ledger.LedgerUnit("points", "reservation", "INSUFFICIENT_POINTS")


# ------------------------------------------------------------------------------ earn rules

DEFAULT_TIER = "STANDARD"


@dataclass(frozen=True)
class EarnRules:
    """Points per yen and a multiplier per tier (from settings)."""

    yen_per_point: int
    tier_multipliers: Mapping[str, float]
    points_ttl: timedelta

    def points_for(self, yen: int, tier: str) -> int:
        """Whole points, rounded down: a purchase never earns a fraction."""
        multiplier = self.tier_multipliers.get(tier, self.tier_multipliers.get(DEFAULT_TIER, 1.0))
        return math.floor(yen * multiplier / self.yen_per_point)


def earn_amount(currency: str, units: int, nanos: int) -> int:
    """The yen an earn is based on, from a google.type.Money's parts."""
    if currency != EARN_CURRENCY:
        raise invalid("amount.currency_code", f"must be {EARN_CURRENCY}", "CURRENCY_NOT_SUPPORTED")
    if nanos != 0:
        raise invalid("amount.nanos", "JPY has no fractional part", "INVALID_AMOUNT")
    if units <= 0 or units > MAX_EARN_YEN:
        raise invalid("amount.units", f"between 1 and {MAX_EARN_YEN}", "INVALID_AMOUNT")
    return units


# ------------------------------------------------------------------------------ validation


def check_points(points: int, path: str, *, allow_negative: bool = False) -> int:
    low = -MAX_POINTS_PER_ENTRY if allow_negative else 1
    if points == 0 or points < low or points > MAX_POINTS_PER_ENTRY:
        sign = "non-zero" if allow_negative else "positive"
        raise invalid(path, f"{sign}, at most {MAX_POINTS_PER_ENTRY} in size", "INVALID_POINTS")
    return points


def check_text(value: str, path: str, limit: int, *, required: bool = True) -> str:
    cleaned = value.strip()
    if required and not cleaned:
        raise invalid(path, "is required", "FIELD_REQUIRED")
    if len(cleaned) > limit:
        raise invalid(path, f"at most {limit} characters")
    return cleaned


# ------------------------------------------------------------------------------ decisions


def insufficient_points(wanted: int, available: int) -> FailedPrecondition:
    return POINTS.insufficient(wanted, available)


def spend_oldest_first(lots: Sequence[Lot], points: int) -> list[tuple[uuid.UUID, int]]:
    """How many points to take from each lot (given oldest first) to spend ``points``. Takes
    what the lots hold; a shortfall (a balance made of unexpired but reversed-into-negative
    history) is simply not taken from any lot."""
    taken: list[tuple[uuid.UUID, int]] = []
    left = points
    for lot in lots:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            taken.append((lot.entry_id, take))
            left -= take
    return taken


def expire_lot(lot_remaining: int, account: Account) -> tuple[int, int]:
    """What an expired lot becomes: (points that expire now, points it keeps).

    Never expires points a live hold may still need (kept; a later sweep expires them if
    the hold is released) nor below a zero balance. What is neither expired nor kept was
    already taken from the balance by a reversal and is dropped, so the lot never waits
    for later earnings to expire against."""
    expired = max(min(lot_remaining, account.balance - account.reserved), 0)
    kept = min(lot_remaining - expired, account.reserved)
    return expired, kept


def check_reversible(entry: Entry) -> None:
    if entry.kind not in LOT_KINDS or entry.points <= 0:
        raise FailedPrecondition(
            "only earned or positively adjusted points can be reversed",
            reason="ENTRY_NOT_REVERSIBLE",
        )


def reversed_by_returns() -> FailedPrecondition:
    return FailedPrecondition(
        "returns already reversed these points", reason="ENTRY_NOT_REVERSIBLE"
    )


def entry_not_found() -> NotFound:
    return NotFound("no such ledger entry", reason="ENTRY_NOT_FOUND")


def parse_tier_multipliers(values: Mapping[str, float]) -> dict[str, float]:
    problems = [k for k, v in values.items() if v < 0 or v > 100]
    if problems:
        raise InvalidArgument(f"tier multipliers out of range: {problems}")
    return {k.upper(): float(v) for k, v in values.items()}
