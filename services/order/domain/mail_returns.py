"""Returns by mail domain: a return authorization (RMA) — units a customer may send back,
where to and until when — and its states. No I/O.

REQUESTED → RECEIVED (the parcel arrived: a return is recorded) → REFUNDED (restocked and
refunded, with that return); REQUESTED → CANCELLED (withdrawn) or EXPIRED (no parcel by
``expires_at``). Expiry is a matter of time, not of a sweeper: a REQUESTED authorization
past its date reads as EXPIRED everywhere (``status_at``) and no longer holds its units.

Invariants:
- While REQUESTED and not expired, its units are taken: no second authorization, no store
  return of them (``returns.returnable`` counts them).
- Received at most once, never more units than authorized; the window is judged when it
  was requested (a parcel in the post when the window closes is still taken).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum

from services.order.domain.fulfilments import FulfillmentLine, Fulfilment
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

_REASON = re.compile(r"[A-Z0-9_]{1,32}")


class ReturnAuthorizationStatus(IntEnum):
    REQUESTED = 1
    RECEIVED = 2
    REFUNDED = 3
    CANCELLED = 4
    EXPIRED = 5


@dataclass(frozen=True)
class ReturnAuthorization:
    id: uuid.UUID
    number: str
    order_id: uuid.UUID
    lines: tuple[FulfillmentLine, ...]
    ship_to: str
    status: ReturnAuthorizationStatus
    expires_at: datetime
    reason: str = ""
    receipt_request_id: str | None = None
    created_at: datetime | None = None

    def status_at(self, now: datetime) -> ReturnAuthorizationStatus:
        if self.status is ReturnAuthorizationStatus.REQUESTED and now > self.expires_at:
            return ReturnAuthorizationStatus.EXPIRED
        return self.status

    def holds_units(self, now: datetime) -> bool:
        """Its parcel may still arrive: its units are not returnable otherwise."""
        return self.status_at(now) is ReturnAuthorizationStatus.REQUESTED

    def cancel(self, now: datetime) -> ReturnAuthorization:
        status = self.status_at(now)
        if status is ReturnAuthorizationStatus.CANCELLED:
            return self
        if status is not ReturnAuthorizationStatus.REQUESTED:
            raise FailedPrecondition(
                f"a {status.name.lower()} return authorization cannot be cancelled",
                reason="RETURN_AUTHORIZATION_NOT_CANCELLABLE",
                metadata={"status": status.name},
            )
        return replace(self, status=ReturnAuthorizationStatus.CANCELLED)

    def receive(
        self, arrived: Sequence[FulfillmentLine], request_id: str, now: datetime
    ) -> tuple[ReturnAuthorization, tuple[FulfillmentLine, ...]]:
        """RECEIVED, and the units that arrived (all authorized ones when none are named);
        or why the parcel cannot be taken."""
        if self.receipt_request_id is not None:
            raise FailedPrecondition(
                "this return authorization was received already",
                reason="RETURN_ALREADY_RECEIVED",
                metadata={"status": self.status.name},
            )
        status = self.status_at(now)
        if status is not ReturnAuthorizationStatus.REQUESTED:
            raise FailedPrecondition(
                f"a {status.name.lower()} return authorization takes no parcel",
                reason=f"RETURN_AUTHORIZATION_{status.name}",
                metadata={"status": status.name},
            )
        lines = tuple(arrived) or self.lines
        authorized = {line.sku: line.quantity for line in self.lines}
        for index, line in enumerate(lines):
            if line.quantity > authorized.get(line.sku, 0):
                raise InvalidArgument(
                    "more units than the return authorization names",
                    reason="RETURN_LINES_NOT_AUTHORIZED",
                    field_violations=[
                        FieldViolation(
                            f"lines[{index}]",
                            f"at most {authorized.get(line.sku, 0)} units of {line.sku}",
                        )
                    ],
                )
        received = replace(
            self, status=ReturnAuthorizationStatus.RECEIVED, receipt_request_id=request_id
        )
        return received, lines


def check_reason(reason: str) -> str:
    if reason and not _REASON.fullmatch(reason):
        raise InvalidArgument(
            "a return reason is a code such as TOO_SMALL",
            reason="RETURN_REASON_INVALID",
            field_violations=[FieldViolation("reason", "A-Z, 0-9 and _, at most 32")],
        )
    return reason


def ship_to(fulfilments: Iterable[Fulfilment], lines: Sequence[FulfillmentLine]) -> str:
    """Where the parcel goes: the location that handed over most of its units (the DC or
    store that shipped them, the store they were picked up at) — it stocks those goods and
    its staff know the order. Ties: the first such location by name, so a retry agrees."""
    wanted = {line.sku for line in lines}
    units: dict[str, int] = {}
    for fulfilment in fulfilments:
        if fulfilment.left:
            for line in fulfilment.lines:
                if line.sku in wanted:
                    units[fulfilment.store_id] = units.get(fulfilment.store_id, 0) + line.quantity
    return min(units, key=lambda location: (-units[location], location))


def authorization_not_found() -> NotFound:
    return NotFound("no such return authorization", reason="RETURN_AUTHORIZATION_NOT_FOUND")
