"""Pick waves: a store's fulfilments still to pick, grouped so staff pick several orders in
one walk through the shelves. No I/O.

Rule: fulfilments in due order (overdue ones first, as they are the earliest); a wave takes
them while they are due within ``width`` of its first and it holds fewer than ``max_size``;
the next one starts a new wave. Deterministic for the same work list, so two devices of a
store see the same waves. A wave's pick list adds up the units per SKU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.order.domain.fulfilments import FulfillmentStatus, Fulfilment
from tenpo.kit.errors import FieldViolation, InvalidArgument

DEFAULT_WIDTH = timedelta(minutes=60)
MIN_WIDTH, MAX_WIDTH = timedelta(minutes=15), timedelta(minutes=240)
DEFAULT_SIZE, MAX_SIZE = 20, 100
#: Fulfilments grouped in one answer at most (the earliest due).
MAX_GROUPED = 500
#: What is still to pick: a fulfilment prepared but not yet picked.
TO_PICK = frozenset({FulfillmentStatus.PREPARING})


@dataclass(frozen=True)
class PickWave:
    number: int
    fulfilments: tuple[Fulfilment, ...]

    @property
    def due_from(self) -> datetime:
        return self.fulfilments[0].due_at

    @property
    def due_until(self) -> datetime:
        return self.fulfilments[-1].due_at

    @property
    def pick_lines(self) -> tuple[tuple[str, int], ...]:
        units: dict[str, int] = {}
        for fulfilment in self.fulfilments:
            for line in fulfilment.lines:
                units[line.sku] = units.get(line.sku, 0) + line.quantity
        return tuple(sorted(units.items()))


def wave_settings(minutes: int, max_size: int) -> tuple[timedelta, int]:
    """The request's width and size (0: the defaults), or INVALID_ARGUMENT."""
    width = timedelta(minutes=minutes) if minutes else DEFAULT_WIDTH
    size = max_size or DEFAULT_SIZE
    violations = []
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        violations.append(FieldViolation("wave_minutes", "15-240"))
    if not 1 <= size <= MAX_SIZE:
        violations.append(FieldViolation("max_fulfillments", f"1-{MAX_SIZE}"))
    if violations:
        raise InvalidArgument(
            "invalid pick-wave settings", reason="WAVE_INVALID", field_violations=violations
        )
    return width, size


def pick_waves(
    fulfilments: Sequence[Fulfilment], width: timedelta, max_size: int
) -> list[PickWave]:
    ordered = sorted(
        (f for f in fulfilments if f.status in TO_PICK), key=lambda f: (f.due_at, f.id)
    )
    waves: list[list[Fulfilment]] = []
    for fulfilment in ordered:
        current = waves[-1] if waves else None
        if (
            current is not None
            and len(current) < max_size
            and fulfilment.due_at < current[0].due_at + width
        ):
            current.append(fulfilment)
        else:
            waves.append([fulfilment])
    return [PickWave(n, tuple(items)) for n, items in enumerate(waves, start=1)]
