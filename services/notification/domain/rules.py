"""The rules every message obeys, decided from facts the store gathered:

- transactional messages need no consent and are never deferred or capped;
- marketing needs the recipient's consent for the channel and no suppression of it;
- a suppression that is not marketing-only (a hard bounce) stops every message;
- marketing SMS and push inside the recipient's local quiet hours are deferred to their
  end, not dropped (e-mail waits in the inbox, so it is sent);
- marketing is capped per recipient across channels per local day: over the cap a
  message is skipped or deferred to the next local day, as its template says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.notification.domain.templates import CapPolicy, Category, Channel


class Outcome(StrEnum):
    SEND = "send"
    DEFER = "defer"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    not_before: datetime | None = None


@dataclass(frozen=True)
class QuietHours:
    """Local times; ``start > end`` spans midnight (21:00-09:00)."""

    start: time = time(21, 0)
    end: time = time(9, 0)

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, local_now: datetime) -> datetime:
        """The first moment at or after ``local_now`` outside quiet hours."""
        if not self.contains(local_now.timetz().replace(tzinfo=None)):
            return local_now
        candidate = local_now.replace(
            hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0
        )
        if candidate <= local_now:
            candidate += timedelta(days=1)
        return candidate


@dataclass(frozen=True)
class Facts:
    """What is known about a recipient when a message is decided."""

    address: str
    time_zone: ZoneInfo
    consented: bool
    suppressed: bool
    suppressed_marketing_only: bool
    marketing_sent_today: int


def local_day_start(now: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of ``now``'s local day, as an aware datetime in ``zone``."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def decide(
    *,
    category: Category,
    channel: Channel,
    cap_policy: CapPolicy,
    facts: Facts,
    now: datetime,
    quiet_hours: QuietHours,
    daily_cap: int,
) -> Decision:
    if not facts.address:
        return Decision(Outcome.SKIP, "UNREACHABLE")
    if facts.suppressed and not (
        facts.suppressed_marketing_only and category is Category.TRANSACTIONAL
    ):
        return Decision(Outcome.SKIP, "SUPPRESSED")
    if category is Category.TRANSACTIONAL:
        return Decision(Outcome.SEND)
    if not facts.consented:
        return Decision(Outcome.SKIP, "NO_CONSENT")
    not_before = now.astimezone(facts.time_zone)
    reason = ""
    if facts.marketing_sent_today >= daily_cap:
        if cap_policy is not CapPolicy.DEFER:
            return Decision(Outcome.SKIP, "FREQUENCY_CAPPED")
        not_before = local_day_start(now, facts.time_zone) + timedelta(days=1)
        reason = "FREQUENCY_CAPPED"
    if channel in (Channel.SMS, Channel.PUSH):
        later = quiet_hours.end_after(not_before)
        if later != not_before:
            not_before, reason = later, reason or "QUIET_HOURS"
    if reason:
        return Decision(Outcome.DEFER, reason, not_before)
    return Decision(Outcome.SEND)
