"""An append-only ledger with holds, the one shape behind loyalty points and the store card.
No I/O.

Invariants (the store enforces them in PostgreSQL, these types and functions decide):

* the ledger is append-only and an account's balance is the sum of its entries' amounts
  (a deferred constraint trigger checks it at commit);
* ``available = balance - reserved`` is what a hold may take, and a hold never takes more
  than is available at that moment (one conditional UPDATE of the account row: concurrent
  holds queue on it and re-check);
* a hold ends once: committed into one negative entry, or released (by its owner or, past
  its expiry, by the sweep). Committing a committed hold answers it again; a released or
  expired one cannot be committed;
* every change is idempotent per ``request_id`` (the kit's idempotency, bound to the caller).

What differs between the ledgers (the unit, the words of their errors) is a ``LedgerUnit``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition, NotFound

#: The values every hold-state enum mirrors (``ReservationState``, ``StoreCardHoldState``
#: restate their proto enums; these are the same numbers).
HELD, COMMITTED, RELEASED = 1, 2, 3


@dataclass(frozen=True)
class Origin:
    """Where a change came from: touchpoint and store."""

    channel: int
    store_id: str | None


@dataclass(frozen=True)
class Hold:
    """An amount set aside for a payment until it is committed or released."""

    id: uuid.UUID
    customer_id: uuid.UUID
    amount: int
    state: IntEnum
    reference: str
    channel: int
    store_id: str | None
    created_at: datetime
    expires_at: datetime
    entry_id: uuid.UUID | None = None

    @property
    def held(self) -> bool:
        return self.state == HELD


@dataclass(frozen=True)
class LedgerUnit:
    """What one ledger counts (``points``, ``yen``), what its holds are called
    (``reservation``, ``hold``), and so the stable reasons of its errors: the unit's
    shortfall, and ``<HOLD>_RELEASED``, ``<HOLD>_NOT_FOUND``."""

    name: str
    hold_name: str
    insufficient_reason: str

    @property
    def released_reason(self) -> str:
        return f"{self.hold_name.upper()}_RELEASED"

    @property
    def not_found_reason(self) -> str:
        return f"{self.hold_name.upper()}_NOT_FOUND"

    def insufficient(self, wanted: int, available: int) -> FailedPrecondition:
        return FailedPrecondition(
            f"{wanted} {self.name} wanted, {available} available",
            reason=self.insufficient_reason,
            metadata={"available": str(available), "wanted": str(wanted)},
        )

    def check_open(self, hold: Hold, now: datetime) -> None:
        """A hold may be committed while held and unexpired; a committed one answers again."""
        if hold.state == COMMITTED:
            return
        if hold.state == RELEASED or hold.expires_at <= now:
            raise FailedPrecondition(
                f"the {self.hold_name} was released or has expired", reason=self.released_reason
            )

    def not_found(self) -> NotFound:
        return NotFound(f"no such {self.hold_name}", reason=self.not_found_reason)
