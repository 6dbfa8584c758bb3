"""Segment rules without servers: memberships, review moments, leap-day birthdays, custom
segments as data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.customer.domain import segments as sd
from tenpo.kit.errors import InvalidArgument

NOW = datetime(2027, 6, 15, 3, 0, tzinfo=UTC)
RULES = sd.SegmentRules(lapsed_after=timedelta(days=180), loyal_min_orders=3, loyal_min_tier_rank=2)


def facts(**values: object) -> sd.Facts:
    base: dict[str, object] = {
        "order_count": 0,
        "first_order_at": None,
        "last_order_at": None,
        "twelve_month_spend": 0,
        "oldest_spend_order_at": None,
        "channels": frozenset(),
        "tier_rank": -1,
        "birthday": None,
    }
    return sd.Facts(**(base | values))  # type: ignore[arg-type]


def test_no_orders_no_segments_and_nothing_to_review() -> None:
    assert sd.decide(facts(), RULES, NOW) == sd.Decision(frozenset(), None)


def test_one_recent_order_is_a_first_time_buyer_who_lapses_after_the_configured_time() -> None:
    last = NOW - timedelta(days=10)
    decision = sd.decide(
        facts(order_count=1, first_order_at=last, last_order_at=last, channels=frozenset({1})),
        RULES,
        NOW,
    )
    assert decision.segments == {sd.FIRST_TIME_BUYER}
    assert decision.next_review == last + timedelta(days=180)
    later = sd.decide(
        facts(order_count=1, last_order_at=last, channels=frozenset({1})),
        RULES,
        last + timedelta(days=180),
    )
    assert later.segments == {sd.FIRST_TIME_BUYER, sd.LAPSED}


def test_repeat_loyal_by_orders_or_tier_and_omnichannel() -> None:
    last = NOW - timedelta(days=1)
    many = sd.decide(
        facts(order_count=3, last_order_at=last, channels=frozenset({1, 5})), RULES, NOW
    )
    assert many.segments == {sd.REPEAT_BUYER, sd.LOYAL, sd.OMNICHANNEL}
    by_tier = sd.decide(facts(order_count=2, last_order_at=last, tier_rank=2), RULES, NOW)
    assert by_tier.segments == {sd.REPEAT_BUYER, sd.LOYAL}


def test_birthday_month_in_tokyo_and_reviewed_at_the_next_month() -> None:
    # 31 May 2027 16:00 UTC is already 1 June in Tokyo.
    moment = datetime(2027, 5, 31, 16, 0, tzinfo=UTC)
    decision = sd.decide(facts(birthday=date(1990, 6, 20)), RULES, moment)
    assert decision.segments == {sd.BIRTHDAY_MONTH}
    assert decision.next_review == datetime(2027, 6, 30, 15, 0, tzinfo=UTC)  # 1 July, Tokyo


def test_leap_day_birthdays_are_celebrated_on_28_february_in_other_years() -> None:
    assert sd.birthdays_on(date(2027, 2, 28)) == [(2, 28), (2, 29)]
    assert sd.birthdays_on(date(2028, 2, 28)) == [(2, 28)]
    assert sd.birthdays_on(date(2028, 2, 29)) == [(2, 29)]
    assert sd.birthdays_on(date(2027, 3, 1)) == [(3, 1)]


def test_custom_segments_as_data() -> None:
    custom = sd.parse_custom(
        '{"big_spender": {"min_twelve_month_spend_yen": 50000}, '
        '"recent_store": {"channels_any": [5], "ordered_within_days": 30}}',
        {"STANDARD": -1, "GOLD": 2},
    )
    rules = sd.SegmentRules(custom=custom)
    last = NOW - timedelta(days=5)
    decision = sd.decide(
        facts(
            order_count=1,
            last_order_at=last,
            twelve_month_spend=60_000,
            oldest_spend_order_at=last,
            channels=frozenset({5}),
        ),
        rules,
        NOW,
    )
    assert {"big_spender", "recent_store"} <= decision.segments
    assert decision.next_review == last + timedelta(days=30)  # recent_store ends then


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"loyal": {"min_orders": 1}}, "segment_rules.loyal"),
        ({"Bad Key": {"min_orders": 1}}, "segment_rules.Bad Key"),
        ({"x": {"min_orders": -1}}, "segment_rules.x.min_orders"),
        ({"x": {"min_orders": "3"}}, "segment_rules.x.min_orders"),
        ({"x": {"shoe_size": 3}}, "segment_rules.x"),
        ({"x": {"min_tier": "PLATINUM"}}, "segment_rules.x.min_tier"),
        ({"x": {"channels_any": ["WEB"]}}, "segment_rules.x.channels_any"),
    ],
)
def test_bad_custom_segments_are_refused_with_the_offending_field(
    raw: dict[str, object], path: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        sd.parse_custom(raw, {"STANDARD": -1, "GOLD": 2})  # type: ignore[arg-type]
    assert caught.value.field_violations[0].field == path


def test_segment_keys_are_checked() -> None:
    known = frozenset(sd.BUILT_IN)
    assert sd.check_segment_key(" lapsed ", known) == "lapsed"
    with pytest.raises(InvalidArgument):
        sd.check_segment_key("", known)
    with pytest.raises(InvalidArgument):
        sd.check_segment_key("whales", known)
