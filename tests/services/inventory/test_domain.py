"""Inventory domain without servers: stock invariants, signals, distances, sourcing choices."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inventory import domain as d
from services.inventory.domain import sourcing
from services.inventory.seed import LOCATIONS
from tenpo.kit.errors import DomainError, FailedPrecondition, InvalidArgument

NETWORK = {loc.id: loc for loc in LOCATIONS}
TOKYO_STATION = d.GeoPoint(35.6812, 139.7671)


def test_atp_is_on_hand_minus_reserved_minus_safety_stock_and_never_negative() -> None:
    level = d.StockLevel("S", "x", on_hand=10, reserved=3, safety_stock=2)
    assert level.available_to_promise == 5
    assert d.StockLevel("S", "x", on_hand=2, reserved=1, safety_stock=5).available_to_promise == 0


def test_reservation_beyond_atp_is_refused_with_a_stable_reason() -> None:
    level = d.StockLevel("S", "x", on_hand=5, reserved=1, safety_stock=1)
    assert level.reserve(3).reserved == 4
    with pytest.raises(FailedPrecondition) as caught:
        level.reserve(4)
    assert caught.value.reason == "INSUFFICIENT_STOCK"
    assert caught.value.metadata["available"] == "3"


def test_a_transfer_moves_units_through_in_transit() -> None:
    transfer = d.new_transfer("S", "dc-kanto", "tokyo-shibuya", 3)
    assert transfer.state is d.TransferState.IN_TRANSIT and not transfer.received
    assert (transfer.source_key, transfer.target_key) == (
        ("S", "dc-kanto"),
        ("S", "tokyo-shibuya"),
    )
    target = d.StockLevel("S", "tokyo-shibuya", on_hand=1).expect_in_transit(3)
    assert (target.on_hand, target.in_transit, target.available_to_promise) == (1, 3, 1)
    arrived = target.receive_in_transit(3)
    assert (arrived.on_hand, arrived.in_transit) == (4, 0)
    with pytest.raises(FailedPrecondition) as caught:
        target.receive_in_transit(4)
    assert caught.value.reason == "IN_TRANSIT_UNDERFLOW"


@pytest.mark.parametrize(
    ("arguments", "field", "reason"),
    [
        (("S", "dc-kanto", "dc-kanto", 1), "to_location_id", "SAME_LOCATION"),
        (("S", "dc-kanto", "tokyo-shibuya", 0), "quantity", "QUANTITY_INVALID"),
        (("S", "DC KANTO", "tokyo-shibuya", 1), "from_location_id", "LOCATION_ID_INVALID"),
        (("", "dc-kanto", "tokyo-shibuya", 1), "sku", "SKU_INVALID"),
    ],
)
def test_a_transfer_refuses_bad_input_naming_the_field(
    arguments: tuple[str, str, str, int], field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        d.new_transfer(*arguments)
    assert caught.value.reason == reason
    assert [v.field for v in caught.value.field_violations] == [field]


def test_adjustments_cannot_take_reserved_units() -> None:
    level = d.StockLevel("S", "x", on_hand=5, reserved=4)
    assert level.adjust(-1).on_hand == 4
    with pytest.raises(FailedPrecondition) as caught:
        level.adjust(-2)
    assert caught.value.reason == "STOCK_RESERVED"
    with pytest.raises(FailedPrecondition) as empty:
        d.StockLevel("S", "x").adjust(-1)
    assert empty.value.reason == "INSUFFICIENT_ON_HAND"


def test_adjustment_reasons_have_a_direction() -> None:
    d.check_adjustment(3, d.MovementReason.RECEIPT)
    d.check_adjustment(-3, d.MovementReason.CORRECTION)
    for quantity, reason, expected in [
        (-1, d.MovementReason.RECEIPT, "QUANTITY_SIGN_INVALID"),
        (1, d.MovementReason.DAMAGE, "QUANTITY_SIGN_INVALID"),
        (1, d.MovementReason.CYCLE_COUNT, "REASON_INVALID"),
        (0, d.MovementReason.CORRECTION, "QUANTITY_INVALID"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            d.check_adjustment(quantity, reason)
        assert caught.value.reason == expected


@pytest.mark.parametrize(
    ("before", "after", "signals"),
    [
        (5, 0, [d.StockSignal.OUT_OF_STOCK]),
        (0, 5, [d.StockSignal.BACK_IN_STOCK]),
        (0, 2, [d.StockSignal.BACK_IN_STOCK]),  # rising into the band is not "low"
        (9, 3, [d.StockSignal.LOW_STOCK]),
        (3, 2, []),  # already low: announced once, not on every sale
        (9, 8, []),
        (2, 0, [d.StockSignal.OUT_OF_STOCK]),
    ],
)
def test_stock_signals_fire_on_transitions_only(
    before: int, after: int, signals: list[d.StockSignal]
) -> None:
    assert d.stock_signals(before, after, threshold=3) == signals


def test_haversine_matches_known_distances() -> None:
    shibuya, umeda = NETWORK["tokyo-shibuya"].geo_point, NETWORK["osaka-umeda"].geo_point
    assert 395 < d.distance_km(shibuya, umeda) < 405  # Shibuya → Umeda is ~400 km
    assert 2.5 < d.distance_km(TOKYO_STATION, NETWORK["tokyo-shibuya"].geo_point) < 6.5
    assert d.distance_km(shibuya, shibuya) == 0


def test_lines_are_validated_and_merged() -> None:
    merged = d.normalize_lines([d.Line("A", 1, "x"), d.Line("B", 2), d.Line("A", 2, "x")])
    assert merged == [d.Line("A", 3, "x"), d.Line("B", 2)]
    with pytest.raises(InvalidArgument) as caught:
        d.normalize_lines([d.Line("A", 0)])
    assert caught.value.field_violations[0].field == "lines[0].quantity"


def _candidates(origin: d.GeoPoint, stock: dict[str, dict[str, int]]) -> list[sourcing.Candidate]:
    return [
        sourcing.Candidate(loc, d.distance_km(origin, loc.geo_point), stock.get(loc.id, {}))
        for loc in LOCATIONS
    ]


def test_delivery_prefers_one_shipment_over_a_nearer_split() -> None:
    # Shibuya (near) has only A; the Kanto DC (farther) has A and B: one parcel wins.
    stock = {"tokyo-shibuya": {"A": 5}, "tokyo-ginza": {"B": 5}, "dc-kanto": {"A": 5, "B": 5}}
    plan = sourcing.plan_delivery(
        [d.Line("A", 1), d.Line("B", 1)], _candidates(TOKYO_STATION, stock), same_day=False
    )
    assert plan.complete and plan.shipment_count == 1
    assert {a.location_id for a in plan.allocations} == {"dc-kanto"}
    assert all(a.method is d.AllocationMethod.SHIP and a.reason for a in plan.allocations)
    assert plan.explanation


def test_delivery_breaks_ties_by_distance_then_priority_and_skips_stores_that_do_not_ship() -> None:
    # Ginza is nearest to Tokyo station but does not ship; Shibuya ships and is nearer than DCs.
    stock = {
        "tokyo-ginza": {"A": 9},
        "tokyo-shibuya": {"A": 9},
        "dc-kanto": {"A": 9},
        "fc-chiba": {"A": 9},
    }
    plan = sourcing.plan_delivery(
        [d.Line("A", 2)], _candidates(TOKYO_STATION, stock), same_day=False
    )
    assert [a.location_id for a in plan.allocations] == ["tokyo-shibuya"]
    # Equal distance (no point given): the better priority wins (FC 10 beats DC 20).
    flat = [sourcing.Candidate(loc, 0.0, stock.get(loc.id, {})) for loc in LOCATIONS]
    plan = sourcing.plan_delivery([d.Line("A", 2)], flat, same_day=False)
    assert [a.location_id for a in plan.allocations] == ["fc-chiba"]


def test_delivery_splits_when_no_single_location_has_enough_and_reports_the_shortfall() -> None:
    stock = {"dc-kanto": {"A": 3}, "fc-chiba": {"A": 2}, "dc-kansai": {"A": 1}}
    plan = sourcing.plan_delivery(
        [d.Line("A", 5)], _candidates(TOKYO_STATION, stock), same_day=False
    )
    assert plan.complete and plan.shipment_count == 2
    assert sorted((a.location_id, a.quantity) for a in plan.allocations) == [
        ("dc-kanto", 3),
        ("fc-chiba", 2),
    ]
    short = sourcing.plan_delivery(
        [d.Line("A", 9)], _candidates(TOKYO_STATION, stock), same_day=False
    )
    assert not short.complete and short.unfulfillable[0][:2] == ("A", 3)


def test_same_day_only_uses_same_day_locations() -> None:
    stock = {"fc-chiba": {"A": 9}, "tokyo-ginza": {"A": 9}}
    plan = sourcing.plan_delivery(
        [d.Line("A", 1)], _candidates(TOKYO_STATION, stock), same_day=True
    )
    assert plan.unfulfillable and not plan.allocations
    # Shinjuku does not ship parcels from the store, but it offers same-day delivery.
    stock["tokyo-shinjuku"] = {"A": 1}
    plan = sourcing.plan_delivery(
        [d.Line("A", 1)], _candidates(TOKYO_STATION, stock), same_day=True
    )
    assert [a.location_id for a in plan.allocations] == ["tokyo-shinjuku"]
    plan = sourcing.plan_delivery(
        [d.Line("A", 1)], _candidates(TOKYO_STATION, stock), same_day=False
    )
    assert [a.location_id for a in plan.allocations] == ["fc-chiba"]


def test_click_and_collect_uses_the_pickup_store_first_then_transfers_from_the_nearest() -> None:
    ginza = NETWORK["tokyo-ginza"]
    stock = {
        "tokyo-ginza": {"A": 1, "B": 0},
        "tokyo-shibuya": {"A": 5, "B": 5},
        "dc-kansai": {"B": 9},
    }
    plan = sourcing.plan_pickup(
        [d.Line("A", 2), d.Line("B", 1)], ginza, _candidates(ginza.geo_point, stock)
    )
    got = sorted((a.location_id, a.sku, a.quantity, a.method) for a in plan.allocations)
    assert got == [
        ("tokyo-ginza", "A", 1, d.AllocationMethod.PICKUP),
        ("tokyo-shibuya", "A", 1, d.AllocationMethod.TRANSFER_TO_PICKUP),
        ("tokyo-shibuya", "B", 1, d.AllocationMethod.TRANSFER_TO_PICKUP),
    ]
    assert plan.complete and plan.shipment_count == 2


def test_pickup_needs_a_click_and_collect_store() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        sourcing.plan_pickup([d.Line("A", 1)], NETWORK["dc-kanto"], [])
    assert caught.value.reason == "PICKUP_NOT_OFFERED"


def test_anywhere_reservation_is_all_or_nothing() -> None:
    levels = {
        ("A", "dc-kanto"): d.StockLevel("A", "dc-kanto", on_hand=2),
        ("B", "x"): d.StockLevel("B", "x", on_hand=1),
    }
    before = dict(levels)
    with pytest.raises(FailedPrecondition):
        sourcing.allocate_reservation(
            [d.Line("B", 1, "x"), d.Line("A", 3)], levels, [NETWORK["dc-kanto"]], None
        )
    assert levels == before
    placed = sourcing.allocate_reservation(
        [d.Line("B", 1, "x"), d.Line("A", 2)], levels, [NETWORK["dc-kanto"]], None
    )
    # A line sourced anywhere ships (it may use a store's ship-from-store capacity).
    assert placed == [d.Line("B", 1, "x"), d.Line("A", 2, "dc-kanto", d.AllocationMethod.SHIP)]
    assert levels[("A", "dc-kanto")].available_to_promise == 0


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "release", "sell", "adjust", "safety"]), st.integers(-5, 8)
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_no_operation_sequence_breaks_the_invariants(operations: list[tuple[str, int]]) -> None:
    level = d.StockLevel("S", "x", on_hand=5)
    for name, amount in operations:
        before = level
        try:
            if name == "reserve":
                level = level.reserve(abs(amount))
                assert abs(amount) <= before.available_to_promise
            elif name == "release":
                level = level.release(abs(amount))
            elif name == "sell":
                level = level.sell_reserved(abs(amount))
            elif name == "adjust":
                level = level.adjust(amount)
            else:
                level = level.with_safety_stock(abs(amount))
        except DomainError:
            assert level == before
        assert level.on_hand >= 0
        assert 0 <= level.reserved <= level.on_hand
        assert level.available_to_promise >= 0
