"""Loyalty campaigns: who they are for, what they add, their limits. No I/O.

Invariants (the store enforces the counting ones under locks):

* a campaign gives extra points only to orders placed while it runs, on its channels, by
  its audience (decided from the customer's orders *before* this one and her tier);
* a member benefits at most ``per_member_limit`` times (counted under her customer lock);
* the points given never exceed ``budget_points`` (one conditional UPDATE of the campaign
  row: concurrent earnings queue on it and re-check), an order that would exceed it gets
  none of that campaign;
* what returns and cancellations take back of an order's extra points goes back to the
  budget (in the same share as the order's points, on the running total), and an award
  given back in full (the order cancelled or wholly returned) no longer counts as a use.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition, NotFound

from . import Violations

MAX_NAME = 120
MAX_MULTIPLIER = 10.0
MAX_BONUS = 1_000_000
MAX_BUDGET = 10_000_000_000
MAX_LAPSED_DAYS = 3650
MAX_DURATION = timedelta(days=366)


class AudienceKind(IntEnum):
    EVERYONE = 1
    FIRST_TIME = 2
    MIN_TIER = 3
    LAPSED = 4


@dataclass(frozen=True)
class Audience:
    kind: AudienceKind
    min_tier: str = ""
    lapsed_days: int = 0


@dataclass(frozen=True)
class Campaign:
    id: uuid.UUID
    display_name: str
    start_at: datetime
    end_at: datetime
    audience: Audience
    channels: tuple[int, ...]
    multiplier: float
    bonus_points: int
    per_member_limit: int
    budget_points: int
    given_points: int
    created_at: datetime

    def runs_at(self, moment: datetime) -> bool:
        return self.start_at <= moment < self.end_at

    def extra_points(self, base_points: int) -> int:
        """What an order earning ``base_points`` by the rules gets on top, rounded down."""
        multiplied = math.floor(base_points * max(self.multiplier, 1.0)) - base_points
        return max(multiplied, 0) + self.bonus_points


@dataclass(frozen=True)
class Award:
    """What a campaign gave one order, and how much of it went back to the budget."""

    campaign_id: uuid.UUID
    order_id: str
    customer_id: uuid.UUID
    points: int
    refunded_points: int

    @property
    def counts_as_use(self) -> bool:
        return self.refunded_points < self.points

    def refund_due(self, taken_back: int) -> int:
        """Budget to give back now that ``taken_back`` of the award's points (in total, so
        far) were taken back from the order: never more than the award, never twice."""
        return max(min(taken_back, self.points) - self.refunded_points, 0)


@dataclass(frozen=True)
class Shopper:
    """What the audience is decided on: the customer before this order."""

    tier_rank: int
    previous_orders: int
    last_order_at: datetime | None


def applies(
    campaign: Campaign, *, channel: int, placed_at: datetime, shopper: Shopper, min_tier_rank: int
) -> bool:
    if not campaign.runs_at(placed_at):
        return False
    if campaign.channels and channel not in campaign.channels:
        return False
    audience = campaign.audience
    if audience.kind is AudienceKind.FIRST_TIME:
        return shopper.previous_orders == 0
    if audience.kind is AudienceKind.MIN_TIER:
        return shopper.tier_rank >= min_tier_rank
    if audience.kind is AudienceKind.LAPSED:
        return shopper.last_order_at is not None and shopper.last_order_at <= placed_at - (
            timedelta(days=audience.lapsed_days)
        )
    return True


def check_campaign(campaign: Campaign, tiers: Collection[str], channels: Collection[int]) -> None:
    """Every problem of a staff-defined campaign at once, as field violations."""
    v = Violations()
    v.check(
        0 < len(campaign.display_name.strip()) <= MAX_NAME,
        "campaign.display_name",
        f"1 to {MAX_NAME} characters",
    )
    v.check(campaign.start_at < campaign.end_at, "campaign.end_time", "after start_time")
    v.check(
        campaign.end_at - campaign.start_at <= MAX_DURATION,
        "campaign.end_time",
        "at most 366 days after start_time",
    )
    audience = campaign.audience
    if audience.kind is AudienceKind.MIN_TIER:
        v.check(audience.min_tier in tiers, "campaign.audience.min_tier", "a configured tier")
    if audience.kind is AudienceKind.LAPSED:
        v.check(
            0 < audience.lapsed_days <= MAX_LAPSED_DAYS,
            "campaign.audience.lapsed_days",
            f"1 to {MAX_LAPSED_DAYS}",
        )
    v.check(all(c in channels for c in campaign.channels), "campaign.channels", "known channels")
    v.check(
        campaign.multiplier == 0 or 1.0 <= campaign.multiplier <= MAX_MULTIPLIER,
        "campaign.points_multiplier",
        f"1 to {MAX_MULTIPLIER}",
    )
    v.check(0 <= campaign.bonus_points <= MAX_BONUS, "campaign.bonus_points", f"0 to {MAX_BONUS}")
    v.check(
        campaign.multiplier > 1.0 or campaign.bonus_points > 0,
        "campaign.points_multiplier",
        "a multiplier above 1 or a bonus is required",
    )
    v.check(0 <= campaign.per_member_limit <= 1000, "campaign.per_member_limit", "0 to 1000")
    v.check(
        0 <= campaign.budget_points <= MAX_BUDGET, "campaign.budget_points", f"0 to {MAX_BUDGET}"
    )
    v.raise_if_any("the campaign is not valid", "INVALID_CAMPAIGN")


def campaign_not_found() -> NotFound:
    return NotFound("no such campaign", reason="CAMPAIGN_NOT_FOUND")


def not_a_running_lapsed_campaign() -> FailedPrecondition:
    return FailedPrecondition(
        "the campaign is not a running lapsed-customer campaign",
        reason="CAMPAIGN_NOT_LAPSED_OR_NOT_RUNNING",
    )
