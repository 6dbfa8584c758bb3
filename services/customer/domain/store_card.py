"""The prepaid store card: stored value in yen, separate from points. No I/O.

Invariants (the store enforces them in PostgreSQL, these functions decide):

* the ledger is append-only and the balance is the sum of its entries' amounts;
* ``0 <= reserved <= balance <= max balance``: a hold never takes more than is available,
  a top-up never takes the balance above the maximum, also under concurrent calls (each is
  one conditional UPDATE of the card row);
* a hold is committed (one PAYMENT entry) or released once; committing a committed hold
  answers it again, a released or expired one cannot be committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition, NotFound

from . import invalid

WRITE_SCOPE = "storecard:write"
CURRENCY = "JPY"
#: One top-up or payment at most (the card's maximum bounds the balance).
MAX_AMOUNT_YEN = 1_000_000


class StoreCardEntryKind(IntEnum):
    """Mirrors tenpo.customer.v1.StoreCardEntryKind."""

    TOP_UP = 1
    PAYMENT = 2


class StoreCardHoldState(IntEnum):
    """Mirrors tenpo.customer.v1.StoreCardHoldState."""

    HELD = 1
    COMMITTED = 2
    RELEASED = 3


@dataclass(frozen=True)
class Card:
    customer_id: uuid.UUID
    balance: int
    reserved: int
    version: int
    updated_at: datetime | None

    @property
    def available(self) -> int:
        return self.balance - self.reserved


def empty_card(customer_id: uuid.UUID) -> Card:
    return Card(customer_id, 0, 0, 0, None)


@dataclass(frozen=True)
class Entry:
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: StoreCardEntryKind
    amount: int
    channel: int
    store_id: str | None
    request_id: str
    reference: str
    created_at: datetime


@dataclass(frozen=True)
class Hold:
    id: uuid.UUID
    customer_id: uuid.UUID
    amount: int
    state: StoreCardHoldState
    reference: str
    channel: int
    store_id: str | None
    created_at: datetime
    expires_at: datetime
    entry_id: uuid.UUID | None = None


def check_amount(currency: str, units: int, nanos: int, path: str = "amount") -> int:
    if currency != CURRENCY:
        raise invalid(f"{path}.currency_code", f"must be {CURRENCY}", "CURRENCY_NOT_SUPPORTED")
    if nanos != 0:
        raise invalid(f"{path}.nanos", "JPY has no fractional part", "INVALID_AMOUNT")
    if units <= 0 or units > MAX_AMOUNT_YEN:
        raise invalid(f"{path}.units", f"between 1 and {MAX_AMOUNT_YEN}", "INVALID_AMOUNT")
    return units


def insufficient_funds(wanted: int, available: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"{wanted} yen wanted, {available} available",
        reason="INSUFFICIENT_FUNDS",
        metadata={"available": str(available), "wanted": str(wanted)},
    )


def balance_limit(wanted: int, room: int, maximum: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"a top-up of {wanted} yen would exceed the card's maximum of {maximum}",
        reason="STORE_CARD_LIMIT",
        metadata={"room": str(max(room, 0)), "maximum": str(maximum)},
    )


def check_hold_open(hold: Hold, now: datetime) -> None:
    if hold.state is StoreCardHoldState.COMMITTED:
        return
    if hold.state is StoreCardHoldState.RELEASED or hold.expires_at <= now:
        raise FailedPrecondition("the hold was released or has expired", reason="HOLD_RELEASED")


def hold_not_found() -> NotFound:
    return NotFound("no such store card hold", reason="HOLD_NOT_FOUND")
