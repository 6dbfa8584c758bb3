"""Fulfilment rules: splitting by the plan, amounts that add up, the lifecycle, pickup codes,
what the fulfilments make of their order."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.order.domain.fulfilments import (
    PICKUP_CODE_ALPHABET,
    PICKUP_CODE_MAX_FAILURES,
    CaptureState,
    FulfillmentPolicy,
    FulfillmentStatus,
    FulfillmentType,
    PickupCodes,
    allocate,
    check_pickup_code,
    order_after,
    require_cancellable,
    split,
)
from services.order.domain.geo import PREFECTURE_POINTS, delivery_point, distance_km
from services.order.domain.orders import (
    Fulfillment,
    FulfillmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentState,
    Totals,
)
from services.order.domain.postal_points import POSTAL_PREFIX_POINTS
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
POLICY = FulfillmentPolicy()
CODES = PickupCodes(b"test-pickup-code-key-0123456789")


def order(method: FulfillmentMethod, store: str | None = None) -> Order:
    return Order(
        id=uuid.uuid4(),
        number="T-000042",
        customer_id="cust-1",
        cart_id="c1",
        cart_etag="v1",
        status=OrderStatus.PLACED,
        payment_method=PaymentMethod.CARD,
        payment_state=PaymentState.AUTHORIZED,
        lines=(
            OrderLine("A", "p", "シャツ", 3, 1000, 0, 3000),
            OrderLine("B", "p", "靴", 1, 5000, 500, 4500),
        ),
        fulfillment=Fulfillment(method, store),
        totals=Totals(8000, 500, 500, 8000),
    )


def test_one_fulfilment_per_location_with_amounts_adding_up_to_the_total() -> None:
    placed = order(FulfillmentMethod.DELIVERY)
    plan = {"A": [("dc-kanto", 2), ("tokyo-shibuya", 1)], "B": [("dc-kanto", 1)]}

    items = split(placed, plan, NOW, POLICY)

    assert [(f.location_id, f.store_id, f.number) for f in items] == [
        ("dc-kanto", "dc-kanto", "T-000042-1"),
        ("tokyo-shibuya", "tokyo-shibuya", "T-000042-2"),
    ]
    assert [[(li.sku, li.quantity) for li in f.lines] for f in items] == [
        [("A", 2), ("B", 1)],
        [("A", 1)],
    ]
    assert sum(f.amount for f in items) == placed.totals.total
    assert all(f.type is FulfillmentType.DELIVERY for f in items)
    assert all(f.due_at == NOW + POLICY.delivery_dispatch for f in items)


def test_pickup_fulfilments_belong_to_the_pickup_store_and_carry_out_is_handed_over() -> None:
    pickup = split(
        order(FulfillmentMethod.PICKUP, "tokyo-ginza"), {"A": [("dc-kanto", 3)]}, NOW, POLICY
    )
    assert (pickup[0].type, pickup[0].location_id, pickup[0].store_id) == (
        FulfillmentType.CLICK_AND_COLLECT,
        "dc-kanto",
        "tokyo-ginza",
    )
    carry = split(
        order(FulfillmentMethod.CARRY_OUT, "tokyo-ginza"), {"A": [("tokyo-ginza", 3)]}, NOW, POLICY
    )
    assert carry[0].status is FulfillmentStatus.HANDED_OVER
    assert carry[0].capture_state is CaptureState.DUE
    same_day = split(order(FulfillmentMethod.SAME_DAY), {"A": [("tokyo-shibuya", 3)]}, NOW, POLICY)
    assert same_day[0].window == (NOW + timedelta(hours=2), NOW + timedelta(hours=6))


@pytest.mark.parametrize(
    ("total", "weights"), [(1000, [1, 1, 1]), (7, [0, 0]), (8000, [6000, 4500, 0]), (0, [5])]
)
def test_allocate_splits_exactly(total: int, weights: list[int]) -> None:
    shares = allocate(total, weights)
    assert sum(shares) == total
    assert all(share >= 0 for share in shares)


def test_the_lifecycle_moves_forwards_only_and_repeats_are_no_ops() -> None:
    [f] = split(order(FulfillmentMethod.PICKUP, "s"), {"A": [("s", 3)]}, NOW, POLICY)
    with pytest.raises(FailedPrecondition) as caught:
        f.pick_up()
    assert caught.value.reason == "FULFILLMENT_STATE_CONFLICT"
    ready = f.mark_ready(NOW, timedelta(days=7), CODES)
    assert ready.hold_until == NOW + timedelta(days=7)
    assert ready.mark_ready(NOW + timedelta(hours=1), timedelta(days=7), CODES) == ready
    code = CODES.shown(ready)
    assert code is not None
    assert len(code) == 8 and set(code) <= set(PICKUP_CODE_ALPHABET)
    assert ready.code_matches(code.lower(), CODES)
    assert not ready.code_matches("BBBBBBBB" if code != "BBBBBBBB" else "CCCCCCCC", CODES)
    picked = ready.pick_up()
    assert picked.capture_state is CaptureState.DUE
    with pytest.raises(FailedPrecondition) as left:
        picked.cancel("X")
    assert left.value.reason == "FULFILLMENT_ALREADY_LEFT"
    with pytest.raises(FailedPrecondition):
        require_cancellable([picked])


def test_wrong_codes_lock_after_the_limit() -> None:
    [f] = split(order(FulfillmentMethod.PICKUP, "s"), {"A": [("s", 3)]}, NOW, POLICY)
    for _ in range(PICKUP_CODE_MAX_FAILURES - 1):
        f = f.code_refused(NOW)
        assert not f.code_locked(NOW)
    f = f.code_refused(NOW)
    assert f.code_locked(NOW)
    assert not f.code_locked(NOW + timedelta(minutes=16))


def test_pickup_codes_are_checked_before_any_lookup() -> None:
    assert check_pickup_code("bcdf-ghjk") == "BCDFGHJK"
    for bad in ("", "BCDFGHJ", "BCDFGHJKL", "BCDFGHJ0", "ＢＣＤＦＧＨＪＫ"):
        with pytest.raises(InvalidArgument) as caught:
            check_pickup_code(bad)
        assert caught.value.reason == "PICKUP_CODE_INVALID"


def test_the_order_completes_when_every_fulfilment_is_done_and_is_paid_as_captures_land() -> None:
    placed = order(FulfillmentMethod.DELIVERY)
    first, second = split(placed, {"A": [("x", 3)], "B": [("y", 1)]}, NOW, POLICY)
    shipped = first.ship("yamato", "1", NOW).captured()
    progressed = order_after(placed, [shipped, second])
    assert (progressed.status, progressed.payment_state) == (
        OrderStatus.PLACED,
        PaymentState.PARTIALLY_CAPTURED,
    )
    delivered = shipped.advance_delivery(FulfillmentStatus.DELIVERED)
    other = second.ship("sagawa", "2", NOW).advance_delivery(FulfillmentStatus.DELIVERED)
    done = order_after(placed, [delivered, other])
    assert (done.status, done.payment_state) == (
        OrderStatus.COMPLETED,
        PaymentState.PARTIALLY_CAPTURED,
    )
    paid = order_after(done, [delivered, other.captured()])
    assert (paid.status, paid.payment_state) == (OrderStatus.COMPLETED, PaymentState.CAPTURED)


def test_an_order_whose_every_fulfilment_is_cancelled_is_cancelled() -> None:
    placed = order(FulfillmentMethod.PICKUP, "s")
    [f] = split(placed, {"A": [("s", 3)]}, NOW, POLICY)
    expired = replace(f.mark_ready(NOW, timedelta(days=1), CODES).cancel("PICKUP_EXPIRED"))
    after = order_after(placed, [expired])
    assert (after.status, after.failure_reason) == (OrderStatus.CANCELLED, "PICKUP_EXPIRED")


def test_a_pickup_code_is_kept_only_as_a_nonce_and_a_keyed_digest() -> None:
    [f] = split(order(FulfillmentMethod.PICKUP, "s"), {"A": [("s", 1)]}, NOW, POLICY)
    ready = f.mark_ready(NOW, timedelta(days=7), CODES)
    code = CODES.shown(ready)
    assert code is not None
    stored = repr(ready)
    assert code not in stored  # nothing the store writes holds the code
    assert ready.pickup_nonce is not None and ready.pickup_code_digest is not None
    # The same code for the customer every time; another key derives and checks otherwise.
    assert CODES.shown(ready) == code
    other_key = PickupCodes(b"another-key-of-at-least-16-bytes")
    assert other_key.shown(ready) != code
    assert not ready.code_matches(code, other_key)
    # Another fulfilment with the same nonce gets another code.
    twin = replace(ready, id=uuid.uuid4())
    assert CODES.shown(twin) != code
    # Codes spread over the whole alphabet (no letter unused in a few hundred draws).
    drawn = {
        letter
        for _ in range(300)
        for letter in CODES.shown(f.mark_ready(NOW, timedelta(days=1), CODES)) or ""
    }
    assert drawn == set(PICKUP_CODE_ALPHABET)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PickupCodes(b"short")


def test_a_delivery_point_comes_from_the_postal_district_where_the_table_knows_it() -> None:
    shibuya = {"administrativeArea": "東京都", "postalCode": "150-0002"}
    assert delivery_point(shibuya) == (35.658, 139.702)
    # Any notation of the same code: full-width digits and dash, none.
    assert delivery_point({**shibuya, "postalCode": "１５０−０００２"}) == (35.658, 139.702)
    assert delivery_point({**shibuya, "postalCode": "1500002"}) == (35.658, 139.702)
    # Hachioji is ~35 km from Shibuya: a 20 km same-day radius around a Shibuya store
    # reaches the prefecture's office but not Hachioji, which only the postal code tells.
    hachioji = delivery_point({"administrativeArea": "東京都", "postalCode": "192-0082"})
    office = delivery_point({"administrativeArea": "東京都"})
    store = (35.6595, 139.7005)
    assert distance_km(store, office) < 20 < distance_km(store, hachioji)
    # Unknown districts, malformed codes and codes contradicting the prefecture fall back.
    assert delivery_point({"administrativeArea": "大阪府", "postalCode": "999-9999"}) == (
        34.686,
        135.520,
    )
    assert delivery_point({"administrativeArea": "大阪府", "postalCode": "53"}) == (34.686, 135.520)
    assert delivery_point({"administrativeArea": "大阪府", "postalCode": "150-0002"}) == (
        34.686,
        135.520,
    )
    # A known district without a prefecture is still better than Tokyo.
    assert delivery_point({"postalCode": "530-0001"}) == (34.705, 135.498)


def test_every_bundled_postal_district_lies_in_japan_near_a_prefecture_office() -> None:
    for prefix, point in POSTAL_PREFIX_POINTS.items():
        assert len(prefix) == 3 and prefix.isdigit()
        assert 24 < point[0] < 46 and 122 < point[1] < 146, prefix
        nearest = min(distance_km(point, office) for office in PREFECTURE_POINTS.values())
        assert nearest < 60, prefix


def test_a_delivery_point_comes_from_the_prefecture() -> None:
    assert delivery_point({"administrativeArea": "大阪府"}) == (34.686, 135.520)
    assert delivery_point({"administrativeArea": "北海道"}) == (43.064, 141.347)
    assert delivery_point({}) == delivery_point({"administrativeArea": "東京都"})
