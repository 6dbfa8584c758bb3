"""Campaign rules, pure: extra points, audiences, channels, validity, refunds."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.customer.domain import campaigns as cd
from services.customer.domain import earning as ed

NOW = datetime(2027, 5, 1, tzinfo=UTC)


def campaign(**fields: object) -> cd.Campaign:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "display_name": "c",
        "start_at": NOW - timedelta(days=1),
        "end_at": NOW + timedelta(days=1),
        "audience": cd.Audience(cd.AudienceKind.EVERYONE),
        "channels": (),
        "multiplier": 1.0,
        "bonus_points": 0,
        "per_member_limit": 0,
        "budget_points": 0,
        "given_points": 0,
        "created_at": NOW,
        **fields,
    }
    return cd.Campaign(**values)  # type: ignore[arg-type]


def shopper(previous: int = 0, last_days_ago: float | None = None, rank: int = -1) -> cd.Shopper:
    last = NOW - timedelta(days=last_days_ago) if last_days_ago is not None else None
    return cd.Shopper(rank, previous, last)


def test_extra_points_are_the_multiplied_part_rounded_down_plus_the_bonus() -> None:
    assert campaign(multiplier=1.5, bonus_points=3).extra_points(15) == 7 + 3
    assert campaign(multiplier=0.0, bonus_points=4).extra_points(15) == 4


def test_audiences_channels_and_time() -> None:
    first = campaign(audience=cd.Audience(cd.AudienceKind.FIRST_TIME), channels=(2,))
    assert cd.applies(first, channel=2, placed_at=NOW, shopper=shopper(), min_tier_rank=-1)
    assert not cd.applies(first, channel=1, placed_at=NOW, shopper=shopper(), min_tier_rank=-1)
    assert not cd.applies(first, channel=2, placed_at=NOW, shopper=shopper(1), min_tier_rank=-1)
    assert not cd.applies(
        first, channel=2, placed_at=NOW + timedelta(days=2), shopper=shopper(), min_tier_rank=-1
    )
    lapsed = campaign(audience=cd.Audience(cd.AudienceKind.LAPSED, lapsed_days=30))
    assert cd.applies(lapsed, channel=1, placed_at=NOW, shopper=shopper(2, 31), min_tier_rank=-1)
    assert not cd.applies(
        lapsed, channel=1, placed_at=NOW, shopper=shopper(2, 29), min_tier_rank=-1
    )
    assert not cd.applies(lapsed, channel=1, placed_at=NOW, shopper=shopper(), min_tier_rank=-1)
    tier = campaign(audience=cd.Audience(cd.AudienceKind.MIN_TIER, min_tier="SILVER"))
    assert cd.applies(tier, channel=1, placed_at=NOW, shopper=shopper(rank=9), min_tier_rank=5)
    assert not cd.applies(tier, channel=1, placed_at=NOW, shopper=shopper(rank=1), min_tier_rank=5)


def test_an_award_gives_back_what_returns_took_once_and_never_more() -> None:
    award = cd.Award(uuid.uuid4(), "o-1", uuid.uuid4(), points=100, refunded_points=30)
    assert award.refund_due(50) == 20  # 50 taken back in total, 30 given back already
    assert award.refund_due(30) == 0 and award.refund_due(10) == 0
    assert award.refund_due(500) == 70  # never more than the award
    assert award.counts_as_use
    assert not cd.Award(award.campaign_id, "o-1", award.customer_id, 100, 100).counts_as_use


def test_the_returned_share_is_rounded_down_on_the_running_total() -> None:
    order = ed.OrderRecord(
        order_id="o-1",
        customer_id=uuid.uuid4(),
        order_number="N1",
        channel=1,
        store_id=None,
        total_yen=3_000,
        units=3,
        returned_yen=1_000,
        returned_units=0,
        cancelled=False,
        placed_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert ed.returned_share(100, order) == 33
    assert ed.returned_share(100, replace(order, returned_yen=9_000)) == 100
    assert ed.returned_share(100, replace(order, total_yen=0, returned_units=2)) == 66
