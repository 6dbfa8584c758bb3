"""The prepaid store card: stored value in yen, separate from points. No I/O.

Invariants (the store enforces them in PostgreSQL, these functions decide):

* the ledger with its holds is ``domain/ledger.py``'s shape (append-only, the balance is
  the sum of its entries' amounts, a hold never takes more than is available, committed
  into one PAYMENT entry or released once);
* ``0 <= reserved <= balance <= max balance``: a top-up never takes the balance above the
  maximum, also under concurrent calls (one conditional statement of the card row).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition

from . import invalid, ledger

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


#: A payment hold: the ledger's generic hold, its amount in yen.
Hold = ledger.Hold

YEN = ledger.LedgerUnit("yen", "hold", "INSUFFICIENT_FUNDS")


def check_amount(currency: str, units: int, nanos: int, path: str = "amount") -> int:
    if currency != CURRENCY:
        raise invalid(f"{path}.currency_code", f"must be {CURRENCY}", "CURRENCY_NOT_SUPPORTED")
    if nanos != 0:
        raise invalid(f"{path}.nanos", "JPY has no fractional part", "INVALID_AMOUNT")
    if units <= 0 or units > MAX_AMOUNT_YEN:
        raise invalid(f"{path}.units", f"between 1 and {MAX_AMOUNT_YEN}", "INVALID_AMOUNT")
    return units


def balance_limit(wanted: int, room: int, maximum: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"a top-up of {wanted} yen would exceed the card's maximum of {maximum}",
        reason="STORE_CARD_LIMIT",
        metadata={"room": str(max(room, 0)), "maximum": str(maximum)},
    )
