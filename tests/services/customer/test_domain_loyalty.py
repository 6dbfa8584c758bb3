"""Loyalty domain rules, without servers."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.customer.domain import loyalty as ld
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

RULES = ld.EarnRules(100, {"STANDARD": 1.0, "GOLD": 2.0}, timedelta(days=365))


def test_points_are_whole_and_follow_the_tier() -> None:
    assert RULES.points_for(199, "STANDARD") == 1
    assert RULES.points_for(1000, "GOLD") == 20
    assert RULES.points_for(1000, "UNKNOWN") == 10  # an unlisted tier earns as STANDARD
    assert RULES.points_for(99, "STANDARD") == 0


def test_spending_takes_the_oldest_lots_first() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lots = [ld.Lot(a, 30), ld.Lot(b, 50), ld.Lot(c, 10)]
    assert ld.spend_oldest_first(lots, 60) == [(a, 30), (b, 30)]
    assert ld.spend_oldest_first(lots, 200) == [(a, 30), (b, 50), (c, 10)]


def test_expiry_spares_held_points_and_never_goes_below_zero() -> None:
    account = ld.Account(
        uuid.uuid4(), balance=100, reserved=70, tier="STANDARD", version=1, updated_at=None
    )
    assert ld.expire_lot(50, account) == (30, 20)  # 20 may still be spent by the hold
    negative = ld.Account(uuid.uuid4(), -10, 0, "STANDARD", 1, None)
    # Taken by a reversal already: nothing expires, and nothing is kept to expire later.
    assert ld.expire_lot(50, negative) == (0, 0)
    assert ld.Account(uuid.uuid4(), -10, 0, "STANDARD", 1, None).available == 0


def test_amounts_and_points_are_checked() -> None:
    assert ld.earn_amount("JPY", 1200, 0) == 1200
    for currency, units, nanos in (("USD", 1, 0), ("JPY", 0, 0), ("JPY", 1, 5)):
        with pytest.raises(InvalidArgument):
            ld.earn_amount(currency, units, nanos)
    with pytest.raises(InvalidArgument):
        ld.check_points(0, "points", allow_negative=True)
    with pytest.raises(InvalidArgument):
        ld.check_points(-1, "points")
    with pytest.raises(InvalidArgument):
        ld.check_points(ld.MAX_POINTS_PER_ENTRY + 1, "points")


def test_only_positive_lots_are_reversible() -> None:
    entry = ld.Entry(
        uuid.uuid4(), uuid.uuid4(), ld.LedgerEntryKind.REDEEM, -5, 2, None, "", "", None
    )  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition):
        ld.check_reversible(entry)
