"""Choosing an A/B split's winner (pure): once every variant has its minimum sample, the
variant with the best rate wins if a two-sided two-proportion z-test says it beats every
other variant at the rule's confidence. Until then there is no winner and recipients keep
being split by weight."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from services.notification.domain.journeys import WinnerRule


@dataclass(frozen=True)
class VariantCount:
    name: str
    #: Recipients sent a message after the split.
    sent: int
    #: Of them, those whose message was opened (or clicked, as the rule says).
    converted: int

    @property
    def rate(self) -> float:
        return self.converted / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Decision:
    winner: str
    #: The winner's z against the runner-up (the weakest of its wins).
    z_score: float
    counts: tuple[VariantCount, ...]


def z_score(a: VariantCount, b: VariantCount) -> float:
    """Pooled two-proportion z statistic of a's rate over b's (0 when both rates are 0 or 1:
    no variance, nothing to tell them apart)."""
    if not a.sent or not b.sent:
        return 0.0
    pooled = (a.converted + b.converted) / (a.sent + b.sent)
    variance = pooled * (1 - pooled) * (1 / a.sent + 1 / b.sent)
    if variance <= 0:
        return 0.0
    return (a.rate - b.rate) / math.sqrt(variance)


def critical_z(confidence: float) -> float:
    """The two-sided critical value: 1.96 at 95 %."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def decide(rule: WinnerRule, counts: list[VariantCount]) -> Decision | None:
    """The winner, or None while a sample is short or the difference is not significant."""
    if len(counts) < 2 or any(c.sent < rule.min_sample for c in counts):
        return None
    # Ties on rate go to the earlier variant: the order is the journey's, so stable.
    best = max(counts, key=lambda c: c.rate)
    weakest = min(z_score(best, other) for other in counts if other is not best)
    if weakest < critical_z(rule.confidence):
        return None
    return Decision(best.name, weakest, tuple(counts))
