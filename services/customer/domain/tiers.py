"""Tiers from twelve-month spend, with a grace period. No I/O.

A tier is reached as soon as the spend of the last twelve months reaches its threshold and
is then kept until the end of the period after the one in which it was last qualified for:
periods are calendar blocks of ``period_months`` (12: calendar years), so a customer who
falls below GOLD in March 2027 stays GOLD until the end of December 2028 (with 12).
Upgrades are immediate; downgrades go one step to the tier the spend qualifies for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tenpo.kit.errors import InvalidArgument

from .loyalty import DEFAULT_TIER

#: The spend window.
SPEND_WINDOW = timedelta(days=365)
PERIOD_MONTHS = frozenset({1, 2, 3, 4, 6, 12})


@dataclass(frozen=True)
class TierRules:
    """Thresholds (JPY of twelve-month spend) by tier name; the default tier needs none."""

    thresholds: Mapping[str, int]
    period_months: int

    def qualified(self, spend_yen: int) -> str:
        best, best_threshold = DEFAULT_TIER, -1
        for tier, threshold in self.thresholds.items():
            if spend_yen >= threshold > best_threshold:
                best, best_threshold = tier, threshold
        return best

    def rank(self, tier: str) -> int:
        return -1 if tier == DEFAULT_TIER else self.thresholds.get(tier, -1)

    def period_end(self, moment: datetime) -> datetime:
        """The end (exclusive) of the period holding ``moment``."""
        at = moment.astimezone(UTC)
        start_month = ((at.month - 1) // self.period_months) * self.period_months
        months = start_month + self.period_months  # months since January of at.year
        return datetime(at.year + months // 12, months % 12 + 1, 1, tzinfo=UTC)

    def decide(
        self, current: str, keep_until: datetime | None, spend_yen: int, now: datetime
    ) -> tuple[str, datetime | None]:
        """The tier now and until when it is kept, given the current tier and spend."""
        qualified = self.qualified(spend_yen)
        if qualified != DEFAULT_TIER and self.rank(qualified) >= self.rank(current):
            # Qualified (again) in this period: kept through the next one.
            return qualified, self.period_end(self.period_end(now))
        if current != DEFAULT_TIER and keep_until is not None and now < keep_until:
            return current, keep_until
        if qualified == DEFAULT_TIER:
            return DEFAULT_TIER, None
        return qualified, self.period_end(self.period_end(now))


def parse_thresholds(values: Mapping[str, int]) -> dict[str, int]:
    parsed = {k.upper(): int(v) for k, v in values.items()}
    if any(v <= 0 for v in parsed.values()) or DEFAULT_TIER in parsed:
        raise InvalidArgument("tier thresholds must be positive yen, the default tier has none")
    if len(set(parsed.values())) != len(parsed):
        raise InvalidArgument("tier thresholds must differ")
    return parsed
