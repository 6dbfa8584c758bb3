"""Pick waves: fulfilments to pick grouped by due time and size, with summed pick lists."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.order.domain.fulfilments import (
    CaptureState,
    FulfillmentLine,
    FulfillmentStatus,
    FulfillmentType,
    Fulfilment,
)
from services.order.domain.waves import pick_waves, wave_settings
from tenpo.kit.errors import InvalidArgument

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def fulfilment(
    minutes: int, *lines: tuple[str, int], status: FulfillmentStatus = FulfillmentStatus.PREPARING
) -> Fulfilment:
    return Fulfilment(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        number="T-000001-1",
        type=FulfillmentType.CLICK_AND_COLLECT,
        status=status,
        location_id="s",
        store_id="s",
        lines=tuple(FulfillmentLine(sku, units) for sku, units in lines),
        amount=1000,
        capture_state=CaptureState.NOT_DUE,
        due_at=NOW + timedelta(minutes=minutes),
    )


def test_waves_follow_due_time_and_size_and_sum_their_pick_lists() -> None:
    late = fulfilment(-30, ("A", 1))  # overdue: the first wave
    a = fulfilment(10, ("A", 2), ("B", 1))
    b = fulfilment(25, ("B", 3))
    c = fulfilment(95, ("C", 1))  # more than an hour after the first wave's start
    picked = fulfilment(5, ("Z", 9), status=FulfillmentStatus.PICKED)  # nothing to pick

    waves = pick_waves([c, b, picked, a, late], timedelta(minutes=60), 20)

    assert [[f.id for f in w.fulfilments] for w in waves] == [[late.id, a.id, b.id], [c.id]]
    assert waves[0].pick_lines == (("A", 3), ("B", 4))
    assert (waves[0].due_from, waves[0].due_until) == (late.due_at, b.due_at)
    assert [w.number for w in waves] == [1, 2]
    # A size limit starts a new wave even within the time.
    small = pick_waves([late, a, b], timedelta(minutes=60), 2)
    assert [len(w.fulfilments) for w in small] == [2, 1]
    assert pick_waves([], timedelta(minutes=60), 20) == []


def test_wave_settings_have_defaults_and_bounds() -> None:
    assert wave_settings(0, 0) == (timedelta(minutes=60), 20)
    assert wave_settings(30, 5) == (timedelta(minutes=30), 5)
    with pytest.raises(InvalidArgument) as caught:
        wave_settings(5, 500)
    assert caught.value.reason == "WAVE_INVALID"
    assert [v.field for v in caught.value.field_violations] == ["wave_minutes", "max_fulfillments"]
