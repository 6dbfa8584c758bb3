"""Tier rules and proportional reversal, pure: periods, the grace period, thresholds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.customer.domain import earning as ed
from services.customer.domain import tiers
from tenpo.kit.errors import InvalidArgument

RULES = tiers.TierRules(thresholds={"SILVER": 50_000, "GOLD": 200_000}, period_months=12)


def at(year: int, month: int, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_the_tier_is_the_highest_threshold_reached() -> None:
    assert RULES.qualified(0) == "STANDARD"
    assert RULES.qualified(49_999) == "STANDARD"
    assert RULES.qualified(50_000) == "SILVER"
    assert RULES.qualified(10_000_000) == "GOLD"


@pytest.mark.parametrize(
    ("months", "moment", "end"),
    [
        (12, at(2027, 3, 15), at(2028, 1)),
        (12, at(2027, 12, 31), at(2028, 1)),
        (3, at(2027, 3, 15), at(2027, 4)),
        (3, at(2027, 11, 2), at(2028, 1)),
        (1, at(2027, 12, 5), at(2028, 1)),
    ],
)
def test_periods_are_calendar_blocks(months: int, moment: datetime, end: datetime) -> None:
    assert tiers.TierRules({}, months).period_end(moment) == end


def test_a_tier_is_kept_until_the_end_of_the_next_period_after_falling_below() -> None:
    tier, keep = RULES.decide("STANDARD", None, 60_000, at(2027, 3, 15))
    assert (tier, keep) == ("SILVER", at(2029, 1))
    # Falling below in 2028: still SILVER until the end of 2028 (the period after 2027).
    assert RULES.decide("SILVER", keep, 0, at(2028, 6, 1)) == ("SILVER", keep)
    # After it: down to what the spend earns.
    assert RULES.decide("SILVER", keep, 0, at(2029, 1, 2)) == ("STANDARD", None)
    # Qualifying again during the grace extends it.
    assert RULES.decide("SILVER", keep, 55_000, at(2028, 6, 1)) == ("SILVER", at(2030, 1))
    # Upgrades are immediate; a downgrade lands on what the spend still reaches.
    assert RULES.decide("SILVER", keep, 250_000, at(2028, 6, 1))[0] == "GOLD"
    assert RULES.decide("GOLD", at(2028, 1), 60_000, at(2028, 2, 1)) == ("SILVER", at(2030, 1))


def test_thresholds_are_checked() -> None:
    assert tiers.parse_thresholds({"silver": 1}) == {"SILVER": 1}
    for bad in ({"SILVER": 0}, {"STANDARD": 5}, {"A": 5, "B": 5}):
        with pytest.raises(InvalidArgument):
            tiers.parse_thresholds(bad)


def _earning(points: int, reversed_: int = 0) -> ed.Earning:
    now = at(2027, 1)
    return ed.Earning(
        "o", uuid.uuid4(), ed.EarningState.PENDING, points, 0, reversed_, 0, None, "S", now, now
    )


def _order(total: int, returned: int, units: int = 0, returned_units: int = 0) -> ed.OrderRecord:
    return ed.OrderRecord(
        "o", uuid.uuid4(), "", 0, None, total, units, returned, returned_units, False, at(2027, 1)
    )


def test_reversal_is_proportional_on_the_running_total() -> None:
    assert ed.reversal_for(_earning(100), _order(10_000, 3_333)) == 33
    # Three thirds reverse all of it, not 99.
    assert ed.reversal_for(_earning(100, 66), _order(10_000, 10_000)) == 34
    assert ed.reversal_for(_earning(100, 100), _order(10_000, 20_000)) == 0
    # Without amounts, by units.
    assert ed.reversal_for(_earning(90), _order(0, 0, units=3, returned_units=1)) == 30
