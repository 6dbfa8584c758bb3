"""The ledger-with-holds rules shared by points and the store card, pure: the reasons each
ledger's errors carry, and when a hold may be committed."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.customer.domain import ledger
from services.customer.domain import loyalty as ld
from services.customer.domain import store_card as sd
from tenpo.kit.errors import DomainError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def hold(state: int, expires_in: timedelta = timedelta(minutes=5)) -> ledger.Hold:
    return ledger.Hold(
        id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        amount=10,
        state=ld.ReservationState(state),
        reference="order-1",
        channel=1,
        store_id=None,
        created_at=NOW,
        expires_at=NOW + expires_in,
    )


def test_each_ledger_keeps_the_reasons_of_its_wire_api() -> None:
    # Stable reasons are part of the contract: the refactor into one module kept them.
    reasons = {
        unit.name: (unit.insufficient_reason, unit.released_reason, unit.not_found_reason)
        for unit in (ld.POINTS, sd.YEN)
    }
    assert reasons == {
        "points": ("INSUFFICIENT_POINTS", "RESERVATION_RELEASED", "RESERVATION_NOT_FOUND"),
        "yen": ("INSUFFICIENT_FUNDS", "HOLD_RELEASED", "HOLD_NOT_FOUND"),
    }
    short = sd.YEN.insufficient(1_000, 400)
    assert (short.reason, short.metadata) == (
        "INSUFFICIENT_FUNDS",
        {"available": "400", "wanted": "1000"},
    )
    assert ld.POINTS.not_found().reason == "RESERVATION_NOT_FOUND"


def test_a_hold_is_committed_while_held_and_unexpired_and_answers_again_once_committed() -> None:
    ld.POINTS.check_open(hold(ledger.HELD), NOW)
    ld.POINTS.check_open(hold(ledger.COMMITTED, timedelta(minutes=-5)), NOW)  # answers again
    for gone in (hold(ledger.RELEASED), hold(ledger.HELD, timedelta(0))):
        with pytest.raises(DomainError) as refused:
            sd.YEN.check_open(gone, NOW)
        assert refused.value.reason == "HOLD_RELEASED"
    assert hold(ledger.HELD).held and not replace(hold(ledger.HELD), state=2).held
    # The proto mirrors agree with the generic states by value.
    assert [int(s) for s in ld.ReservationState] == [ledger.HELD, ledger.COMMITTED, ledger.RELEASED]
    assert [int(s) for s in sd.StoreCardHoldState] == [
        ledger.HELD,
        ledger.COMMITTED,
        ledger.RELEASED,
    ]
