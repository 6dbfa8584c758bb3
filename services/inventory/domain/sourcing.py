"""Inventory domain: sourcing — which locations should supply which lines (pickup,
delivery, same-day, reservations "anywhere"), as pure functions of a sourcing profile
version's rules (``domain.profiles``), the stock and the daily capacity left. No I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.inventory.domain import (
    AllocationMethod,
    Capability,
    DailyCapacity,
    GeoPoint,
    Key,
    Line,
    Location,
    LocationType,
    StockLevel,
    distance_km,
    insufficient_stock,
)
from services.inventory.domain.profiles import (
    ALL_TYPES,
    BUILT_IN_RULES,
    FulfillmentMethod,
    SourcingCriterion,
    SourcingFallback,
    SourcingRules,
)
from tenpo.kit.errors import FailedPrecondition

#: Combinations of up to this many locations are searched exhaustively; beyond, greedily.
MAX_EXACT_SHIPMENTS = 3
#: Only this many best-ranked candidates enter the exhaustive search.
MAX_EXACT_CANDIDATES = 25

CapacityKey = tuple[str, Capability]  # (location_id, SHIP_FROM_STORE | SAME_DAY_DELIVERY)


@dataclass(frozen=True)
class CapacityUse:
    """What of a location's daily capacity of one kind is used today."""

    units: int = 0
    orders: int = 0

    def left(self, capacity: DailyCapacity) -> int | None:
        """Units that may still leave today (None: no unit limit); 0 once the orders are
        used up as well."""
        if capacity.orders_per_day and self.orders >= capacity.orders_per_day:
            return 0
        if capacity.units_per_day:
            return max(0, capacity.units_per_day - self.units)
        return None

    def share_left(self, capacity: DailyCapacity) -> float:
        """The scarcer of the two limits, as the share still free (1.0 without limits)."""
        shares = [1.0]
        if capacity.units_per_day:
            shares.append(1 - self.units / capacity.units_per_day)
        if capacity.orders_per_day:
            shares.append(1 - self.orders / capacity.orders_per_day)
        return max(0.0, min(shares))


@dataclass(frozen=True)
class Candidate:
    """A location that may supply: how far it is, what it can promise per SKU, and (when the
    method uses a daily capacity) how many units it may still send today."""

    location: Location
    distance_km: float
    available: Mapping[str, int]
    units_left: int | None = None
    capacity_share_left: float = 1.0


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
    #: The profile version that decided (set by the use case that loaded it).
    profile: str = ""
    profile_version: int = 0

    @property
    def shipment_count(self) -> int:
        return len({a.location_id for a in self.allocations})

    @property
    def complete(self) -> bool:
        return not self.unfulfillable


Take = tuple[Candidate, str, int]


class Ranking:
    """How a version's criteria order single locations (which is filled first, which the
    greedy search prefers) and sets of locations (which set supplies)."""

    def __init__(self, rules: SourcingRules, types: Sequence[LocationType]) -> None:
        self.criteria = [c for c in rules.criteria if c is not SourcingCriterion.PICKUP_STORE_FIRST]
        order = list(types) + [t for t in ALL_TYPES if t not in types]
        self.type_rank = {t: i for i, t in enumerate(order)}

    @property
    def fewest_first(self) -> bool:
        return bool(self.criteria) and self.criteria[0] is SourcingCriterion.FEWEST_SHIPMENTS

    def location_key(self, c: Candidate) -> tuple[object, ...]:
        key: list[object] = []
        for criterion in self.criteria:
            if criterion is SourcingCriterion.DISTANCE:
                key.append(round(c.distance_km, 6))
            elif criterion is SourcingCriterion.LOCATION_PRIORITY:
                key.append(c.location.priority)
            elif criterion is SourcingCriterion.CAPACITY_LEFT:
                key.append(-round(c.capacity_share_left, 6))
            elif criterion is SourcingCriterion.LOCATION_TYPE:
                key.append(self.type_rank[c.location.type])
        key.append(c.location.id)
        return tuple(key)

    def combo_score(self, combo: Sequence[Candidate]) -> tuple[object, ...]:
        score: list[object] = []
        for criterion in self.criteria:
            if criterion is SourcingCriterion.FEWEST_SHIPMENTS:
                score.append(len(combo))
            elif criterion is SourcingCriterion.DISTANCE:
                score.append(round(sum(c.distance_km for c in combo), 6))
            elif criterion is SourcingCriterion.LOCATION_PRIORITY:
                score.append(sum(c.location.priority for c in combo))
            elif criterion is SourcingCriterion.CAPACITY_LEFT:
                score.append(-round(sum(c.capacity_share_left for c in combo) / len(combo), 6))
            elif criterion is SourcingCriterion.LOCATION_TYPE:
                score.append(sum(self.type_rank[c.location.type] for c in combo))
        score.append(tuple(c.location.id for c in combo))
        return tuple(score)


def _fill(
    chosen: Sequence[Candidate], demand: Mapping[str, int], ranking: Ranking
) -> tuple[list[Take], dict[str, int]]:
    """Take each SKU from the chosen locations in ranked order, within what each may still
    send today. Returns the takes and what is still missing."""
    ordered = sorted(chosen, key=ranking.location_key)
    room = {c.location.id: c.units_left for c in ordered}
    takes: list[Take] = []
    missing: dict[str, int] = {}
    for sku, quantity in demand.items():
        left = quantity
        for candidate in ordered:
            if left == 0:
                break
            cap = room[candidate.location.id]
            take = min(candidate.available.get(sku, 0), left, left if cap is None else cap)
            if take > 0:
                takes.append((candidate, sku, take))
                left -= take
                if cap is not None:
                    room[candidate.location.id] = cap - take
        if left:
            missing[sku] = left
    return takes, missing


def _covers(combo: Sequence[Candidate], demand: Mapping[str, int], ranking: Ranking) -> bool:
    if not all(sum(c.available.get(sku, 0) for c in combo) >= q for sku, q in demand.items()):
        return False
    if all(c.units_left is None for c in combo):
        return True
    return not _fill(combo, demand, ranking)[1]


def _search(
    demand: Mapping[str, int], pool: Sequence[Candidate], ranking: Ranking, limit: int
) -> list[Candidate] | None:
    """The best-ranked set of at most ``limit`` (and MAX_EXACT_SHIPMENTS) locations that
    covers every line, or None."""
    exact_pool = pool[:MAX_EXACT_CANDIDATES]
    best: tuple[tuple[object, ...], list[Candidate]] | None = None
    for size in range(1, min(limit, MAX_EXACT_SHIPMENTS, len(exact_pool)) + 1):
        for combo in itertools.combinations(exact_pool, size):
            if not _covers(combo, demand, ranking):
                continue
            score = ranking.combo_score(combo)
            if best is None or score < best[0]:
                best = (score, list(combo))
        if best is not None and ranking.fewest_first:
            break  # no larger set can rank better
    return best[1] if best else None


def _greedy(
    demand: Mapping[str, int], pool: Sequence[Candidate], ranking: Ranking, limit: int | None
) -> list[Candidate]:
    """Take the location that covers the most remaining units (ties by rank) until nothing
    more helps or ``limit`` locations are taken."""
    chosen: list[Candidate] = []
    remaining = dict(demand)
    candidates = list(pool)
    while remaining and candidates and (limit is None or len(chosen) < limit):

        def gain(c: Candidate, remaining: Mapping[str, int] = remaining) -> int:
            units = sum(min(c.available.get(s, 0), q) for s, q in remaining.items())
            return units if c.units_left is None else min(units, c.units_left)

        pick = min(candidates, key=lambda c: (-gain(c), ranking.location_key(c)))
        if gain(pick) == 0:
            break
        candidates.remove(pick)
        chosen.append(pick)
        _, remaining = _fill(chosen, demand, ranking)
    return chosen


def _useful(
    candidates: Iterable[Candidate], demand: Mapping[str, int], ranking: Ranking
) -> list[Candidate]:
    return sorted(
        (c for c in candidates if any(c.available.get(s, 0) > 0 for s in demand)),
        key=ranking.location_key,
    )


def choose_sources(
    demand: Mapping[str, int],
    candidates: Sequence[Candidate],
    rules: SourcingRules,
    method: FulfillmentMethod,
) -> tuple[list[Take], dict[str, int], list[str]]:
    """Pick the locations that supply ``demand`` by ``rules``: the best-ranked set of at most
    ``max_shipments`` locations of the method's types that covers everything; failing that,
    the rules' fallbacks in order. ``candidates`` may all do the method (capabilities are
    the caller's). Returns the takes (candidate, sku, units), what is still missing and
    the reasoning."""
    demand = {sku: q for sku, q in demand.items() if q > 0}
    notes: list[str] = []
    if not demand:
        return [], {}, notes
    full = sorted(c.location.id for c in candidates if c.units_left == 0)
    if full:
        notes.append(f"skipped {', '.join(full)}: daily capacity used up")
    open_ = [c for c in candidates if c.units_left != 0]
    types = rules.types_for(method)
    ranking = Ranking(rules, types)
    pool = _useful((c for c in open_ if c.location.type in types), demand, ranking)
    names = "/".join(t.name.lower().replace("_", " ") for t in types)
    chosen = _search(demand, pool, ranking, rules.max_shipments)
    if chosen is None and rules.max_shipments > MAX_EXACT_SHIPMENTS:
        greedy = _greedy(demand, pool, ranking, rules.max_shipments)
        if not _fill(greedy, demand, ranking)[1]:
            chosen = greedy
    if chosen is not None:
        notes.append(
            f"{len(chosen)} location{'s' if len(chosen) > 1 else ''} ({names}) can cover every "
            f"line, the best by {_criteria_text(ranking)} among {len(pool)} with stock"
        )
        takes, missing = _fill(chosen, demand, ranking)
        return takes, missing, notes
    notes.append(
        f"no {min(rules.max_shipments, len(pool)) or rules.max_shipments} or fewer "
        f"locations ({names}) cover every line"
    )
    partial = _greedy(demand, pool, ranking, rules.max_shipments)
    split = False
    for fallback in rules.fallbacks:
        if fallback is SourcingFallback.SPLIT_BEYOND_MAX:
            split = True
            partial = _greedy(demand, pool, ranking, None)
            notes.append(f"fallback: took {len(partial)} location(s) greedily by units covered")
        elif fallback is SourcingFallback.ANY_LOCATION_TYPE:
            pool = _useful(open_, demand, ranking)
            widened = _search(demand, pool, ranking, rules.max_shipments)
            partial = widened or _greedy(
                demand, pool, ranking, None if split else rules.max_shipments
            )
            notes.append(f"fallback: every location type, {len(partial)} location(s)")
        elif fallback is SourcingFallback.PARTIAL:
            takes, missing = _fill(partial, demand, ranking)
            if missing:
                notes.append("fallback: what can be placed is proposed, the rest reported")
            return takes, missing, notes
        else:  # FAIL
            break
        takes, missing = _fill(partial, demand, ranking)
        if not missing:
            return takes, missing, notes
    notes.append("the profile accepts no partial plan: nothing is proposed")
    return [], demand, notes


def _criteria_text(ranking: Ranking) -> str:
    return ", ".join(c.name.lower().replace("_", " ") for c in ranking.criteria) or "id"


def plan_pickup(
    lines: Sequence[Line],
    pickup: Location,
    candidates: Sequence[Candidate],
    rules: SourcingRules = BUILT_IN_RULES,
) -> Plan:
    """Click & collect: with PICKUP_STORE_FIRST the pickup store's own stock first and the
    rest transferred into it; without it the pickup store is ranked like any other source."""
    if not pickup.can(Capability.CLICK_AND_COLLECT):
        raise FailedPrecondition(
            f"{pickup.id} does not offer click & collect",
            reason="PICKUP_NOT_OFFERED",
            metadata={"location_id": pickup.id},
        )
    demand = _demand(lines)
    allocations: list[Allocation] = []
    explanation: list[str] = []
    remaining = dict(demand)
    others = list(candidates)
    if rules.criteria and rules.criteria[0] is SourcingCriterion.PICKUP_STORE_FIRST:
        own = next((c for c in candidates if c.location.id == pickup.id), None)
        own_available = own.available if own else {}
        remaining = {}
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
        explanation.append(f"click & collect at {pickup.id}: its own stock is used first")
        if not remaining:
            explanation.append("the pickup store holds every line")
            return Plan(tuple(allocations), (), tuple(explanation))
        others = [c for c in candidates if c.location.id != pickup.id]
        explanation.append(
            f"{sum(remaining.values())} unit(s) must be transferred into {pickup.id}"
        )
    else:
        explanation.append(f"click & collect at {pickup.id}: every location ranked alike")
    takes, missing, notes = choose_sources(remaining, others, rules, FulfillmentMethod.PICKUP)
    explanation.extend(notes)
    for c, sku, units in takes:
        if c.location.id == pickup.id:
            allocations.append(
                Allocation(
                    sku, units, pickup.id, AllocationMethod.PICKUP, 0.0, "pickup store stock"
                )
            )
        else:
            allocations.append(
                Allocation(
                    sku,
                    units,
                    c.location.id,
                    AllocationMethod.TRANSFER_TO_PICKUP,
                    c.distance_km,
                    f"transfer to {pickup.id}: {c.distance_km:.1f} km away, "
                    f"priority {c.location.priority}",
                )
            )
    return Plan(
        tuple(allocations),
        tuple((sku, q, "not enough stock in the network") for sku, q in missing.items()),
        tuple(explanation),
    )


def may_deliver(candidate: Candidate, *, same_day: bool) -> bool:
    """Parcels leave DCs, FCs and stores that ship; same-day delivery leaves the locations
    offering it (store or not) and reaches only as far as their radius."""
    location = candidate.location
    if same_day:
        return (
            location.can(Capability.SAME_DAY_DELIVERY)
            and candidate.distance_km <= location.same_day_reach_km
        )
    return location.ships


def plan_delivery(
    lines: Sequence[Line],
    candidates: Sequence[Candidate],
    *,
    same_day: bool,
    rules: SourcingRules = BUILT_IN_RULES,
) -> Plan:
    """Delivery by ``rules`` among the locations allowed to ship (DCs, FCs, stores that
    ship; same-day ones within their radius if asked)."""
    demand = _demand(lines)
    allowed = [c for c in candidates if may_deliver(c, same_day=same_day)]
    explanation = [
        f"delivery: {len(allowed)} of {len(candidates)} locations may ship"
        + (" same-day (within their radius)" if same_day else "")
        + " (distribution and fulfilment centres, stores that ship)"
    ]
    method = FulfillmentMethod.SAME_DAY if same_day else FulfillmentMethod.DELIVERY
    takes, missing, notes = choose_sources(demand, allowed, rules, method)
    explanation.extend(notes)
    counts: dict[str, int] = {}
    for c, _, _ in takes:
        counts[c.location.id] = counts.get(c.location.id, 0) + 1
    allocations = tuple(
        Allocation(
            sku,
            units,
            c.location.id,
            AllocationMethod.SAME_DAY if same_day else AllocationMethod.SHIP,
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


def capacity_exhausted(location_id: str, kind: Capability, left: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"{location_id} has no {kind.name.lower().replace('_', ' ')} capacity left today "
        f"for this request ({left} unit(s) left)",
        reason="CAPACITY_EXHAUSTED",
        metadata={"location_id": location_id, "capacity": kind.name, "units_left": str(left)},
    )


def consume_capacity(
    usage: dict[CapacityKey, CapacityUse],
    locations: Mapping[str, Location],
    placed: Sequence[Line],
) -> None:
    """Count one request's lines against the daily capacities tracked in ``usage``
    (updated in place): their units, and one order per location and kind. Raises
    CAPACITY_EXHAUSTED, changing nothing, when a limit would be passed."""
    wanted: dict[CapacityKey, int] = {}
    for line in placed:
        location = locations.get(line.location_id)
        kind = location.capacity_kind(line.method) if location else None
        if kind is not None and (line.location_id, kind) in usage:
            key = (line.location_id, kind)
            wanted[key] = wanted.get(key, 0) + line.quantity
    after: dict[CapacityKey, CapacityUse] = {}
    for (location_id, kind), units in wanted.items():
        used = usage[(location_id, kind)]
        capacity = locations[location_id].capacity(kind)
        left = used.left(capacity)
        if left is not None and units > left:
            raise capacity_exhausted(location_id, kind, left)
        after[(location_id, kind)] = CapacityUse(used.units + units, used.orders + 1)
    usage.update(after)


def allocate_reservation(
    lines: Sequence[Line],
    levels: dict[Key, StockLevel],
    anywhere: Sequence[Location],
    near: GeoPoint | None,
    *,
    rules: SourcingRules = BUILT_IN_RULES,
    usage: dict[CapacityKey, CapacityUse] | None = None,
    locations: Mapping[str, Location] | None = None,
) -> list[Line]:
    """Reserve every line or none against ``levels`` (updated in place on success): lines
    with a location take from it, the others are sourced for delivery by ``rules`` among
    ``anywhere`` (placed lines say SHIP). Daily capacities tracked in ``usage`` are used up
    (in place, on success) and respected: a store whose capacity is used up is skipped, a
    line at one is refused. Returns the lines with their locations."""
    working = dict(levels)
    working_usage = dict(usage or {})
    by_id = dict(locations or {}) | {loc.id: loc for loc in anywhere}
    placed: list[Line] = []
    for line in lines:
        if not line.location_id:
            continue
        key = (line.sku, line.location_id)
        level = working.get(key) or StockLevel(line.sku, line.location_id)
        working[key] = level.reserve(line.quantity)
        placed.append(line)
    # The lines with a location first, so that what they use is not offered to the rest.
    after_fixed = dict(working_usage)
    consume_capacity(after_fixed, by_id, placed)
    floating = [line for line in lines if not line.location_id]
    if floating:
        candidates = []
        for location in anywhere:
            kind = location.capacity_kind(AllocationMethod.SHIP)
            used = after_fixed.get((location.id, kind)) if kind else None
            capacity = location.capacity(kind) if kind else DailyCapacity()
            candidates.append(
                Candidate(
                    location,
                    distance_km(near, location.geo_point) if near else 0.0,
                    {
                        line.sku: working[(line.sku, location.id)].available_to_promise
                        for line in floating
                        if (line.sku, location.id) in working
                    },
                    units_left=used.left(capacity) if used else None,
                    capacity_share_left=used.share_left(capacity) if used else 1.0,
                )
            )
        plan = plan_delivery(floating, candidates, same_day=False, rules=rules)
        if plan.unfulfillable:
            sku, missing, _ = plan.unfulfillable[0]
            wanted = next(line.quantity for line in floating if line.sku == sku)
            raise insufficient_stock(sku, "", wanted - missing, wanted)
        shipped = []
        for allocation in plan.allocations:
            key = (allocation.sku, allocation.location_id)
            working[key] = working[key].reserve(allocation.quantity)
            shipped.append(
                Line(allocation.sku, allocation.quantity, allocation.location_id, allocation.method)
            )
        placed.extend(shipped)
    # One order per location and kind for the whole request.
    consume_capacity(working_usage, by_id, placed)
    levels.update(working)
    if usage is not None:
        usage.update(working_usage)
    return placed
