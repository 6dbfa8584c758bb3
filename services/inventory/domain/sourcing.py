"""Inventory domain: sourcing — which locations should supply which lines (pickup,
delivery, reservations "anywhere"), as pure functions. No I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.inventory.domain import (
    AllocationMethod,
    Capability,
    GeoPoint,
    Key,
    Line,
    Location,
    StockLevel,
    distance_km,
    insufficient_stock,
)
from tenpo.kit.errors import FailedPrecondition

#: Combinations of up to this many locations are searched exhaustively; beyond, greedily.
MAX_EXACT_SHIPMENTS = 3
#: Only this many nearest candidates enter the exhaustive search.
MAX_EXACT_CANDIDATES = 25


@dataclass(frozen=True)
class Candidate:
    """A location that may supply: how far it is, and what it can promise per SKU."""

    location: Location
    distance_km: float
    available: Mapping[str, int]

    @property
    def sort_key(self) -> tuple[float, int, str]:
        return (round(self.distance_km, 6), self.location.priority, self.location.id)


@dataclass(frozen=True)
class Allocation:
    sku: str
    quantity: int
    location_id: str
    method: AllocationMethod
    distance_km: float
    reason: str


@dataclass(frozen=True)
class Plan:
    allocations: tuple[Allocation, ...]
    unfulfillable: tuple[tuple[str, int, str], ...]  # (sku, missing, why)
    explanation: tuple[str, ...] = field(default=())

    @property
    def shipment_count(self) -> int:
        return len({a.location_id for a in self.allocations})

    @property
    def complete(self) -> bool:
        return not self.unfulfillable


def _covers(combo: Sequence[Candidate], demand: Mapping[str, int]) -> bool:
    return all(sum(c.available.get(sku, 0) for c in combo) >= q for sku, q in demand.items())


def choose_sources(
    demand: Mapping[str, int], candidates: Iterable[Candidate]
) -> tuple[list[tuple[Candidate, str, int]], dict[str, int], list[str]]:
    """Pick the locations that supply ``demand``: fewest locations first, then the shortest
    total distance, then the best (lowest) total priority. Returns the takes
    (candidate, sku, units), what is still missing, and the reasoning."""
    demand = {sku: q for sku, q in demand.items() if q > 0}
    useful = sorted(
        (c for c in candidates if any(c.available.get(s, 0) > 0 for s in demand)),
        key=lambda c: c.sort_key,
    )
    notes: list[str] = []
    if not demand:
        return [], {}, notes
    chosen: list[Candidate] | None = None
    exact_pool = useful[:MAX_EXACT_CANDIDATES]
    for size in range(1, min(MAX_EXACT_SHIPMENTS, len(exact_pool)) + 1):
        best: tuple[tuple[float, int, tuple[str, ...]], list[Candidate]] | None = None
        for combo in itertools.combinations(exact_pool, size):
            if not _covers(combo, demand):
                continue
            score = (
                round(sum(c.distance_km for c in combo), 6),
                sum(c.location.priority for c in combo),
                tuple(c.location.id for c in combo),
            )
            if best is None or score < best[0]:
                best = (score, list(combo))
        if best is not None:
            chosen = best[1]
            notes.append(
                f"{size} location{'s' if size > 1 else ''} can cover every line "
                f"(fewest shipments), chosen by distance then priority among "
                f"{len(useful)} with stock"
            )
            break
    if chosen is None:
        # Too fragmented for an exhaustive search, or not enough stock anywhere: take the
        # location that covers the most remaining units until nothing more helps.
        chosen = []
        remaining = dict(demand)
        pool = list(useful)
        while remaining and pool:

            def gain(c: Candidate) -> int:
                return sum(min(c.available.get(s, 0), q) for s, q in remaining.items())

            pick = max(pool, key=lambda c: (gain(c), -c.distance_km, -c.location.priority))
            if gain(pick) == 0:
                break
            pool.remove(pick)
            chosen.append(pick)
            for sku in list(remaining):
                remaining[sku] -= min(pick.available.get(sku, 0), remaining[sku])
                if remaining[sku] <= 0:
                    del remaining[sku]
        notes.append(
            f"no {MAX_EXACT_SHIPMENTS} or fewer locations cover every line; "
            f"took {len(chosen)} location(s) greedily by units covered"
        )
    chosen.sort(key=lambda c: c.sort_key)
    takes: list[tuple[Candidate, str, int]] = []
    missing: dict[str, int] = {}
    for sku, quantity in demand.items():
        left = quantity
        for candidate in chosen:
            if left == 0:
                break
            take = min(candidate.available.get(sku, 0), left)
            if take > 0:
                takes.append((candidate, sku, take))
                left -= take
        if left:
            missing[sku] = left
    return takes, missing, notes


def plan_pickup(lines: Sequence[Line], pickup: Location, candidates: Sequence[Candidate]) -> Plan:
    """Click & collect: the pickup store's own stock first, the rest transferred into it."""
    if not pickup.can(Capability.CLICK_AND_COLLECT):
        raise FailedPrecondition(
            f"{pickup.id} does not offer click & collect",
            reason="PICKUP_NOT_OFFERED",
            metadata={"location_id": pickup.id},
        )
    demand = _demand(lines)
    own = next((c for c in candidates if c.location.id == pickup.id), None)
    own_available = own.available if own else {}
    allocations: list[Allocation] = []
    remaining: dict[str, int] = {}
    for sku, quantity in demand.items():
        take = min(own_available.get(sku, 0), quantity)
        if take:
            allocations.append(
                Allocation(
                    sku,
                    take,
                    pickup.id,
                    AllocationMethod.PICKUP,
                    0.0,
                    "pickup store has it in stock: no transfer needed",
                )
            )
        if quantity - take:
            remaining[sku] = quantity - take
    explanation = [f"click & collect at {pickup.id}: its own stock is used first"]
    if not remaining:
        explanation.append("the pickup store holds every line")
        return Plan(tuple(allocations), (), tuple(explanation))
    others = [c for c in candidates if c.location.id != pickup.id]
    takes, missing, notes = choose_sources(remaining, others)
    explanation.append(f"{sum(remaining.values())} unit(s) must be transferred into {pickup.id}")
    explanation.extend(notes)
    allocations.extend(
        Allocation(
            sku,
            units,
            c.location.id,
            AllocationMethod.TRANSFER_TO_PICKUP,
            c.distance_km,
            f"transfer to {pickup.id}: {c.distance_km:.1f} km away, priority {c.location.priority}",
        )
        for c, sku, units in takes
    )
    return Plan(
        tuple(allocations),
        tuple((sku, q, "not enough stock in the network") for sku, q in missing.items()),
        tuple(explanation),
    )


def plan_delivery(
    lines: Sequence[Line], candidates: Sequence[Candidate], *, same_day: bool
) -> Plan:
    """Delivery: fewest shipments, then shortest distance, then priority, among the
    locations allowed to ship (DCs, FCs, stores that ship; same-day ones if asked)."""
    demand = _demand(lines)
    allowed = [
        c
        for c in candidates
        # Offering same-day delivery means delivering from there, store or not.
        if (c.location.can(Capability.SAME_DAY_DELIVERY) if same_day else c.location.ships)
    ]
    explanation = [
        f"delivery: {len(allowed)} of {len(candidates)} locations may ship"
        + (" same-day" if same_day else "")
        + " (distribution and fulfilment centres, stores that ship)"
    ]
    takes, missing, notes = choose_sources(demand, allowed)
    explanation.extend(notes)
    counts: dict[str, int] = {}
    for c, _, _ in takes:
        counts[c.location.id] = counts.get(c.location.id, 0) + 1
    allocations = tuple(
        Allocation(
            sku,
            units,
            c.location.id,
            AllocationMethod.SHIP,
            c.distance_km,
            f"ships {counts[c.location.id]} line(s) in one parcel; {c.distance_km:.1f} km from "
            f"the delivery point, priority {c.location.priority}",
        )
        for c, sku, units in takes
    )
    return Plan(
        allocations,
        tuple(
            (sku, q, "not enough stock at locations that may ship") for sku, q in missing.items()
        ),
        tuple(explanation),
    )


def _demand(lines: Sequence[Line]) -> dict[str, int]:
    demand: dict[str, int] = {}
    for line in lines:
        demand[line.sku] = demand.get(line.sku, 0) + line.quantity
    return demand


def allocate_reservation(
    lines: Sequence[Line],
    levels: dict[Key, StockLevel],
    anywhere: Sequence[Location],
    near: GeoPoint | None,
) -> list[Line]:
    """Reserve every line or none against ``levels`` (updated in place on success): lines
    with a location take from it, the others are sourced by the delivery policy among
    ``anywhere``. Returns the lines with their locations."""
    working = dict(levels)
    placed: list[Line] = []
    for line in lines:
        if not line.location_id:
            continue
        key = (line.sku, line.location_id)
        level = working.get(key) or StockLevel(line.sku, line.location_id)
        working[key] = level.reserve(line.quantity)
        placed.append(line)
    floating = [line for line in lines if not line.location_id]
    if floating:
        candidates = [
            Candidate(
                location,
                distance_km(near, location.geo_point) if near else 0.0,
                {
                    line.sku: working[(line.sku, location.id)].available_to_promise
                    for line in floating
                    if (line.sku, location.id) in working
                },
            )
            for location in anywhere
        ]
        plan = plan_delivery(floating, candidates, same_day=False)
        if plan.unfulfillable:
            sku, missing, _ = plan.unfulfillable[0]
            wanted = next(line.quantity for line in floating if line.sku == sku)
            raise insufficient_stock(sku, "", wanted - missing, wanted)
        for allocation in plan.allocations:
            key = (allocation.sku, allocation.location_id)
            working[key] = working[key].reserve(allocation.quantity)
            placed.append(Line(allocation.sku, allocation.quantity, allocation.location_id))
    levels.update(working)
    return placed
