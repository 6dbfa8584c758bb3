"""Sourcing profiles' rules without servers: validation, ranked criteria, max split and
fallbacks, same-day radius, and the daily capacity sourcing respects."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inventory import domain as d
from services.inventory.domain import sourcing
from services.inventory.domain.profiles import (
    BUILT_IN_RULES,
    FulfillmentMethod,
    SourcingCriterion,
    SourcingFallback,
    SourcingProfileVersion,
    SourcingProfileVersionState,
    SourcingRules,
)
from services.inventory.seed import LOCATIONS
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

NETWORK = {loc.id: loc for loc in LOCATIONS}
TOKYO_STATION = d.GeoPoint(35.6812, 139.7671)
YOKOHAMA = d.GeoPoint(35.4658, 139.6223)
C = SourcingCriterion
F = SourcingFallback
DC, FC, STORE = (
    d.LocationType.DISTRIBUTION_CENTER,
    d.LocationType.FULFILLMENT_CENTER,
    d.LocationType.STORE,
)


def _candidates(
    origin: d.GeoPoint,
    stock: dict[str, dict[str, int]],
    units_left: dict[str, int] | None = None,
    share_left: dict[str, float] | None = None,
) -> list[sourcing.Candidate]:
    return [
        sourcing.Candidate(
            loc,
            d.distance_km(origin, loc.geo_point),
            stock.get(loc.id, {}),
            units_left=(units_left or {}).get(loc.id),
            capacity_share_left=(share_left or {}).get(loc.id, 1.0),
        )
        for loc in LOCATIONS
    ]


def _sources(plan: sourcing.Plan) -> list[tuple[str, str, int]]:
    return sorted((a.location_id, a.sku, a.quantity) for a in plan.allocations)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"criteria": ()}, "version.criteria", "CRITERIA_REQUIRED"),
        ({"criteria": (C.DISTANCE, C.DISTANCE)}, "version.criteria[1]", "CRITERION_REPEATED"),
        (
            {"criteria": (C.DISTANCE, C.PICKUP_STORE_FIRST)},
            "version.criteria[1]",
            "CRITERION_ORDER_INVALID",
        ),
        ({"max_shipments": 0}, "version.max_shipments", "MAX_SHIPMENTS_INVALID"),
        ({"max_shipments": 11}, "version.max_shipments", "MAX_SHIPMENTS_INVALID"),
        (
            {"allowed_types": {FulfillmentMethod.DELIVERY: ()}},
            "version.allowed_location_types[0].location_types",
            "LOCATION_TYPES_REQUIRED",
        ),
        (
            {"allowed_types": {FulfillmentMethod.DELIVERY: (DC, DC)}},
            "version.allowed_location_types[0].location_types",
            "LOCATION_TYPE_REPEATED",
        ),
        (
            {"fallbacks": (F.PARTIAL, F.SPLIT_BEYOND_MAX)},
            "version.fallbacks[0]",
            "FALLBACK_ORDER_INVALID",
        ),
        ({"fallbacks": (F.SPLIT_BEYOND_MAX,) * 2}, "version.fallbacks[1]", "FALLBACK_REPEATED"),
        ({"description": "x" * 501}, "version.description", "DESCRIPTION_INVALID"),
    ],
)
def test_bad_rules_name_the_field_and_a_stable_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        replace(BUILT_IN_RULES, **change).validate()  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert caught.value.field_violations[0].field == field


def test_active_and_retired_versions_never_change() -> None:
    draft = SourcingProfileVersion("p", 2, SourcingProfileVersionState.DRAFT, BUILT_IN_RULES)
    draft.require_draft()
    for state in (SourcingProfileVersionState.ACTIVE, SourcingProfileVersionState.RETIRED):
        with pytest.raises(FailedPrecondition) as caught:
            replace(draft, state=state).require_draft()
        assert caught.value.reason == "SOURCING_PROFILE_VERSION_NOT_DRAFT"
        assert caught.value.metadata["state"] == state.name


def test_dc_first_and_store_first_profiles_source_the_same_order_differently() -> None:
    stock = {
        "dc-kanto": {"A": 5, "B": 5},
        "tokyo-shibuya": {"A": 5},
        "osaka-umeda": {"B": 5},
    }
    lines = [d.Line("A", 1), d.Line("B", 1)]
    built_in = sourcing.plan_delivery(lines, _candidates(TOKYO_STATION, stock), same_day=False)
    assert {a.location_id for a in built_in.allocations} == {"dc-kanto"}  # one parcel
    store_first = SourcingRules(
        criteria=(C.LOCATION_TYPE, C.FEWEST_SHIPMENTS, C.DISTANCE),
        max_shipments=3,
        allowed_types={FulfillmentMethod.DELIVERY: (STORE, FC, DC)},
    )
    plan = sourcing.plan_delivery(
        lines, _candidates(TOKYO_STATION, stock), same_day=False, rules=store_first
    )
    assert _sources(plan) == [("osaka-umeda", "B", 1), ("tokyo-shibuya", "A", 1)]
    # One line, both can cover it: the built-in takes the nearer store, DC-first the DC.
    one = [d.Line("A", 2)]
    assert _sources(
        sourcing.plan_delivery(one, _candidates(TOKYO_STATION, stock), same_day=False)
    ) == [("tokyo-shibuya", "A", 2)]
    dc_first = replace(store_first, allowed_types={FulfillmentMethod.DELIVERY: (DC, FC, STORE)})
    assert _sources(
        sourcing.plan_delivery(
            one, _candidates(TOKYO_STATION, stock), same_day=False, rules=dc_first
        )
    ) == [("dc-kanto", "A", 2)]


def test_max_shipments_and_the_fallbacks_when_nothing_fits() -> None:
    stock = {"dc-kanto": {"A": 2}, "fc-chiba": {"A": 2}, "dc-kansai": {"A": 2}}
    lines = [d.Line("A", 6)]
    candidates = _candidates(TOKYO_STATION, stock)
    strict = replace(BUILT_IN_RULES, max_shipments=2, fallbacks=())
    failed = sourcing.plan_delivery(lines, candidates, same_day=False, rules=strict)
    assert not failed.allocations and failed.unfulfillable[0][:2] == ("A", 6)
    assert "nothing is proposed" in failed.explanation[-1]
    split = sourcing.plan_delivery(
        lines, candidates, same_day=False, rules=replace(strict, fallbacks=(F.SPLIT_BEYOND_MAX,))
    )
    assert split.complete and split.shipment_count == 3
    partial = sourcing.plan_delivery(
        lines, candidates, same_day=False, rules=replace(strict, fallbacks=(F.PARTIAL,))
    )
    assert partial.shipment_count == 2 and partial.unfulfillable[0][:2] == ("A", 2)
    explicit_fail = replace(strict, fallbacks=(F.FAIL,))
    assert not sourcing.plan_delivery(
        lines, candidates, same_day=False, rules=explicit_fail
    ).allocations


def test_any_location_type_fallback_widens_a_stores_only_profile() -> None:
    stock = {"dc-kanto": {"A": 3}}
    stores_only = replace(
        BUILT_IN_RULES,
        allowed_types={FulfillmentMethod.DELIVERY: (STORE,)},
        fallbacks=(F.PARTIAL,),
    )
    candidates = _candidates(TOKYO_STATION, stock)
    plan = sourcing.plan_delivery([d.Line("A", 1)], candidates, same_day=False, rules=stores_only)
    assert not plan.allocations
    widened = replace(stores_only, fallbacks=(F.ANY_LOCATION_TYPE, F.PARTIAL))
    plan = sourcing.plan_delivery([d.Line("A", 1)], candidates, same_day=False, rules=widened)
    assert _sources(plan) == [("dc-kanto", "A", 1)]


def test_pickup_without_pickup_store_first_ranks_the_pickup_store_like_any_source() -> None:
    ginza = NETWORK["tokyo-ginza"]
    stock = {"tokyo-ginza": {"A": 1}, "tokyo-shibuya": {"A": 2}}
    candidates = _candidates(ginza.geo_point, stock)
    built_in = sourcing.plan_pickup([d.Line("A", 2)], ginza, candidates)
    assert _sources(built_in) == [("tokyo-ginza", "A", 1), ("tokyo-shibuya", "A", 1)]
    one_source = SourcingRules(criteria=(C.FEWEST_SHIPMENTS, C.DISTANCE), max_shipments=3)
    plan = sourcing.plan_pickup([d.Line("A", 2)], ginza, candidates, one_source)
    assert _sources(plan) == [("tokyo-shibuya", "A", 2)]
    assert plan.allocations[0].method is d.AllocationMethod.TRANSFER_TO_PICKUP


def test_same_day_reaches_only_as_far_as_each_locations_radius() -> None:
    stock = {"tokyo-shibuya": {"A": 3}, "dc-kanto": {"A": 3}}
    near = sourcing.plan_delivery(
        [d.Line("A", 1)], _candidates(TOKYO_STATION, stock), same_day=True
    )
    assert _sources(near) == [("tokyo-shibuya", "A", 1)]
    assert near.allocations[0].method is d.AllocationMethod.SAME_DAY
    # Yokohama is ~23 km from Shibuya (radius 15) and ~24 km from the Kanto DC (radius 60).
    assert NETWORK["tokyo-shibuya"].same_day_reach_km == 15
    far = sourcing.plan_delivery([d.Line("A", 1)], _candidates(YOKOHAMA, stock), same_day=True)
    assert _sources(far) == [("dc-kanto", "A", 1)]
    # A same-day location without a radius reaches the default.
    unset = replace(NETWORK["tokyo-shibuya"], same_day_radius_km=0)
    assert unset.same_day_reach_km == d.DEFAULT_SAME_DAY_RADIUS_KM


def test_sourcing_skips_stores_whose_capacity_is_used_up_and_respects_what_is_left() -> None:
    stock = {"tokyo-shibuya": {"A": 9}, "dc-kanto": {"A": 9}}
    full = sourcing.plan_delivery(
        [d.Line("A", 2)], _candidates(TOKYO_STATION, stock, {"tokyo-shibuya": 0}), same_day=False
    )
    assert _sources(full) == [("dc-kanto", "A", 2)]
    assert any("capacity used up" in note for note in full.explanation)
    # One unit left at Shibuya: it cannot send two, so the DC sends them in one parcel.
    one_left = sourcing.plan_delivery(
        [d.Line("A", 2)], _candidates(TOKYO_STATION, stock, {"tokyo-shibuya": 1}), same_day=False
    )
    assert _sources(one_left) == [("dc-kanto", "A", 2)]
    # CAPACITY_LEFT first: the store with more of its day left wins over the nearer one.
    stores = {"tokyo-shibuya": {"A": 9}, "osaka-umeda": {"A": 9}}
    rules = SourcingRules(criteria=(C.CAPACITY_LEFT, C.DISTANCE), max_shipments=1)
    plan = sourcing.plan_delivery(
        [d.Line("A", 1)],
        _candidates(TOKYO_STATION, stores, share_left={"tokyo-shibuya": 0.1, "osaka-umeda": 0.9}),
        same_day=False,
        rules=rules,
    )
    assert _sources(plan) == [("osaka-umeda", "A", 1)]


def test_capacity_use_counts_units_and_orders() -> None:
    capacity = d.DailyCapacity(units_per_day=10, orders_per_day=3)
    assert sourcing.CapacityUse(4, 1).left(capacity) == 6
    assert sourcing.CapacityUse(4, 3).left(capacity) == 0  # orders used up
    assert sourcing.CapacityUse(9, 0).share_left(capacity) == pytest.approx(0.1)
    assert sourcing.CapacityUse(0, 0).left(d.DailyCapacity(orders_per_day=2)) is None


def test_reservations_use_capacity_all_or_nothing() -> None:
    shibuya = replace(
        NETWORK["tokyo-shibuya"], ship_from_store_capacity=d.DailyCapacity(orders_per_day=1)
    )
    dc = NETWORK["dc-kanto"]
    locations = {shibuya.id: shibuya, dc.id: dc}
    key = (shibuya.id, d.Capability.SHIP_FROM_STORE)
    levels = {
        ("A", shibuya.id): d.StockLevel("A", shibuya.id, on_hand=5),
        ("A", dc.id): d.StockLevel("A", dc.id, on_hand=5),
    }
    usage = {key: sourcing.CapacityUse()}
    ship = d.AllocationMethod.SHIP
    placed = sourcing.allocate_reservation(
        [d.Line("A", 2, shibuya.id, ship)], levels, [], None, usage=usage, locations=locations
    )
    assert placed == [d.Line("A", 2, shibuya.id, ship)]
    assert usage[key] == sourcing.CapacityUse(units=2, orders=1)
    before = (dict(levels), dict(usage))
    with pytest.raises(FailedPrecondition) as caught:
        sourcing.allocate_reservation(
            [d.Line("A", 1, shibuya.id, ship)], levels, [], None, usage=usage, locations=locations
        )
    assert caught.value.reason == "CAPACITY_EXHAUSTED"
    assert caught.value.metadata["location_id"] == shibuya.id
    assert (levels, usage) == before
    # A pickup at the store uses no shipping capacity; a line sourced anywhere skips it.
    sourcing.allocate_reservation(
        [d.Line("A", 1, shibuya.id)], levels, [], None, usage=usage, locations=locations
    )
    anywhere = sourcing.allocate_reservation(
        [d.Line("A", 1)], levels, [shibuya, dc], TOKYO_STATION, usage=usage, locations=locations
    )
    assert anywhere == [d.Line("A", 1, dc.id, ship)]
    assert usage[key] == sourcing.CapacityUse(units=2, orders=1)


def test_anywhere_lines_need_no_method_or_ship() -> None:
    with pytest.raises(InvalidArgument) as caught:
        d.normalize_lines([d.Line("A", 1, "", d.AllocationMethod.PICKUP)])
    assert caught.value.field_violations[0].field == "lines[0].method"
    with pytest.raises(InvalidArgument) as conflict:
        d.normalize_lines([d.Line("A", 1, "x", d.AllocationMethod.SHIP), d.Line("A", 1, "x", None)])
    assert conflict.value.reason == "METHOD_CONFLICT"


RULES = st.builds(
    SourcingRules,
    criteria=st.permutations(
        [C.FEWEST_SHIPMENTS, C.DISTANCE, C.LOCATION_PRIORITY, C.CAPACITY_LEFT, C.LOCATION_TYPE]
    ).map(tuple),
    max_shipments=st.integers(1, 5),
    allowed_types=st.dictionaries(
        st.sampled_from(list(FulfillmentMethod)),
        st.permutations([DC, FC, STORE]).flatmap(
            lambda types: st.integers(1, 3).map(lambda n: tuple(types[:n]))
        ),
    ),
    fallbacks=st.sampled_from(
        [(), (F.PARTIAL,), (F.SPLIT_BEYOND_MAX, F.PARTIAL), (F.ANY_LOCATION_TYPE, F.FAIL)]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    rules=RULES,
    stock=st.dictionaries(
        st.sampled_from([loc.id for loc in LOCATIONS]),
        st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(0, 6)),
    ),
    caps=st.dictionaries(st.sampled_from([loc.id for loc in LOCATIONS]), st.integers(0, 5)),
    demand=st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(1, 8), min_size=1),
    same_day=st.booleans(),
)
def test_no_profile_plans_more_than_stock_or_capacity_allows(
    rules: SourcingRules,
    stock: dict[str, dict[str, int]],
    caps: dict[str, int],
    demand: dict[str, int],
    same_day: bool,
) -> None:
    rules.validate()
    candidates = _candidates(TOKYO_STATION, stock, caps)
    lines = [d.Line(sku, q) for sku, q in demand.items()]
    plan = sourcing.plan_delivery(lines, candidates, same_day=same_day, rules=rules)
    by_id = {c.location.id: c for c in candidates}
    placed: dict[str, int] = {}
    per_location: dict[str, int] = {}
    for a in plan.allocations:
        candidate = by_id[a.location_id]
        assert sourcing.may_deliver(candidate, same_day=same_day)
        assert a.quantity <= candidate.available.get(a.sku, 0)
        placed[a.sku] = placed.get(a.sku, 0) + a.quantity
        per_location[a.location_id] = per_location.get(a.location_id, 0) + a.quantity
    for location_id, units in per_location.items():
        left = by_id[location_id].units_left
        assert left is None or units <= left
    missing = {sku: q for sku, q, _ in plan.unfulfillable}
    for sku, quantity in demand.items():
        assert placed.get(sku, 0) + missing.get(sku, 0) == quantity
    if F.SPLIT_BEYOND_MAX not in rules.fallbacks:
        assert plan.shipment_count <= rules.max_shipments
    if not ({F.PARTIAL} & set(rules.fallbacks)) and not plan.complete:
        assert not plan.allocations  # no partial plan without PARTIAL
