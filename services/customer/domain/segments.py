"""Segments domain: which computed segments a customer belongs to, from the projection of her
orders, her tier and her birthday, and when time alone may change that. No I/O.

Invariants:
- Membership is a pure function of the facts and the moment: recomputing twice changes
  nothing the second time, so a redelivered event or a second replica's sweep publishes no
  second SegmentEntered/SegmentExited.
- Every membership that time can end or begin (lapsed, birthday month, the twelve-month
  window of spend) names the moment it must be looked at again (``next_review``).
- Birthdays are dates in the shop's time zone (Asia/Tokyo); a 29 February birthday is
  celebrated on 28 February in other years.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from . import invalid

SHOP_ZONE = ZoneInfo("Asia/Tokyo")
#: The spend window tiers use too (orders of the last 365 days).
SPEND_WINDOW = timedelta(days=365)

FIRST_TIME_BUYER = "first_time_buyer"
REPEAT_BUYER = "repeat_buyer"
LOYAL = "loyal"
LAPSED = "lapsed"
BIRTHDAY_MONTH = "birthday_month"
OMNICHANNEL = "omnichannel"
BUILT_IN = (FIRST_TIME_BUYER, REPEAT_BUYER, LOYAL, LAPSED, BIRTHDAY_MONTH, OMNICHANNEL)

SEGMENT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: The conditions a custom segment may combine (all must hold).
CUSTOM_RULE_FIELDS = frozenset(
    {
        "min_orders",
        "max_orders",
        "min_twelve_month_spend_yen",
        "min_channels",
        "channels_any",
        "ordered_within_days",
        "min_tier",
    }
)
MAX_CUSTOM_SEGMENTS = 50


@dataclass(frozen=True)
class CustomRule:
    """A segment defined as data: every condition given must hold."""

    min_orders: int | None = None
    max_orders: int | None = None
    min_twelve_month_spend_yen: int | None = None
    min_channels: int | None = None
    channels_any: frozenset[int] = frozenset()
    ordered_within_days: int | None = None
    min_tier_rank: int | None = None


@dataclass(frozen=True)
class SegmentRules:
    lapsed_after: timedelta = timedelta(days=182)
    loyal_min_orders: int = 5
    #: Rank of the tier from which a customer is loyal whatever her order count (None: by
    #: orders only).
    loyal_min_tier_rank: int | None = None
    custom: Mapping[str, CustomRule] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    """What segments are computed from: the order projection (cancelled orders do not
    count), the tier's rank and the birthday."""

    order_count: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    twelve_month_spend: int
    #: When the oldest order counted in the twelve-month spend leaves the window's start.
    oldest_spend_order_at: datetime | None
    channels: frozenset[int]
    tier_rank: int
    birthday: date | None


@dataclass(frozen=True)
class Decision:
    segments: frozenset[str]
    next_review: datetime | None


def shop_date(moment: datetime) -> date:
    return moment.astimezone(SHOP_ZONE).date()


def _next_month_start(moment: datetime) -> datetime:
    today = shop_date(moment)
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return datetime.combine(date(year, month, 1), time(), SHOP_ZONE)


def decide(facts: Facts, rules: SegmentRules, now: datetime) -> Decision:
    members: set[str] = set()
    moments: list[datetime] = []
    if facts.order_count == 1:
        members.add(FIRST_TIME_BUYER)
    if facts.order_count >= 2:
        members.add(REPEAT_BUYER)
    if facts.order_count >= rules.loyal_min_orders or (
        rules.loyal_min_tier_rank is not None and facts.tier_rank >= rules.loyal_min_tier_rank
    ):
        members.add(LOYAL)
    if facts.last_order_at is not None:
        lapses_at = facts.last_order_at + rules.lapsed_after
        if lapses_at <= now:
            members.add(LAPSED)
        else:
            moments.append(lapses_at)
    if len(facts.channels) >= 2:
        members.add(OMNICHANNEL)
    if facts.birthday is not None:
        if facts.birthday.month == shop_date(now).month:
            members.add(BIRTHDAY_MONTH)
        moments.append(_next_month_start(now))
    if facts.oldest_spend_order_at is not None:
        # The spend falls when that order leaves the window (custom rules on spend).
        moments.append(facts.oldest_spend_order_at + SPEND_WINDOW)
    for key, rule in rules.custom.items():
        holds, moment = _custom_holds(rule, facts, now)
        if holds:
            members.add(key)
        if moment is not None:
            moments.append(moment)
    future = [m for m in moments if m > now]
    return Decision(frozenset(members), min(future) if future else None)


def _custom_holds(rule: CustomRule, facts: Facts, now: datetime) -> tuple[bool, datetime | None]:
    moment: datetime | None = None
    checks = [
        rule.min_orders is None or facts.order_count >= rule.min_orders,
        rule.max_orders is None or facts.order_count <= rule.max_orders,
        rule.min_twelve_month_spend_yen is None
        or facts.twelve_month_spend >= rule.min_twelve_month_spend_yen,
        rule.min_channels is None or len(facts.channels) >= rule.min_channels,
        not rule.channels_any or bool(rule.channels_any & facts.channels),
        rule.min_tier_rank is None or facts.tier_rank >= rule.min_tier_rank,
    ]
    if rule.ordered_within_days is not None:
        recent = facts.last_order_at is not None and (
            facts.last_order_at + timedelta(days=rule.ordered_within_days) > now
        )
        checks.append(recent)
        if recent and facts.last_order_at is not None:
            moment = facts.last_order_at + timedelta(days=rule.ordered_within_days)
    return all(checks), moment


def diff(stored: frozenset[str], decided: frozenset[str]) -> tuple[list[str], list[str]]:
    """(entered, exited), each sorted: what the events announce."""
    return sorted(decided - stored), sorted(stored - decided)


# ------------------------------------------------------------------------------ birthdays


def birthdays_on(day: date) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on ``day``: its own, and on 28 February of a
    year without 29 February, the leap-day birthdays too."""
    found = [(day.month, day.day)]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        found.append((2, 29))
    return found


# ------------------------------------------------------------------------- custom segments


def parse_custom(
    raw: Mapping[str, Mapping[str, Any]] | str, tier_rank: Mapping[str, int]
) -> dict[str, CustomRule]:
    """Custom segments from settings (JSON): ``{"big_spender": {"min_twelve_month_spend_yen":
    100000}}``. Refuses unknown keys and conditions, and names clashing with built-ins."""
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, Mapping) or len(data) > MAX_CUSTOM_SEGMENTS:
        raise invalid("segment_rules", f"an object of at most {MAX_CUSTOM_SEGMENTS} segments")
    rules: dict[str, CustomRule] = {}
    for key, spec in data.items():
        path = f"segment_rules.{key}"
        if not SEGMENT_KEY.match(key) or key in BUILT_IN:
            raise invalid(path, "a new key: lower-case letters, digits and _; not a built-in")
        if not isinstance(spec, Mapping) or not spec:
            raise invalid(path, "an object of conditions")
        unknown = set(spec) - CUSTOM_RULE_FIELDS
        if unknown:
            raise invalid(path, f"unknown conditions {sorted(unknown)}")
        numbers: dict[str, int | None] = {}
        for name in (
            "min_orders",
            "max_orders",
            "min_twelve_month_spend_yen",
            "min_channels",
            "ordered_within_days",
        ):
            value = spec.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise invalid(f"{path}.{name}", "a whole number")
            if value is not None and value < 0:
                raise invalid(f"{path}.{name}", "must not be negative")
            numbers[name] = value
        channels = spec.get("channels_any", [])
        if not isinstance(channels, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
        ):
            raise invalid(f"{path}.channels_any", "a list of channel numbers")
        min_tier = spec.get("min_tier")
        if min_tier is not None and min_tier not in tier_rank:
            raise invalid(f"{path}.min_tier", f"one of {sorted(tier_rank)}")
        rules[key] = CustomRule(
            min_orders=numbers["min_orders"],
            max_orders=numbers["max_orders"],
            min_twelve_month_spend_yen=numbers["min_twelve_month_spend_yen"],
            min_channels=numbers["min_channels"],
            channels_any=frozenset(channels),
            ordered_within_days=numbers["ordered_within_days"],
            min_tier_rank=tier_rank[min_tier] if min_tier is not None else None,
        )
    return rules


def check_segment_key(value: str, known: frozenset[str], path: str = "segment") -> str:
    key = value.strip()
    if not key:
        raise invalid(path, "is required: a segment key", "SEGMENT_REQUIRED")
    if key not in known:
        raise invalid(path, f"one of {sorted(known)}", "SEGMENT_UNKNOWN")
    return key
