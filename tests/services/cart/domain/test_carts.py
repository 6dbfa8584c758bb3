"""Cart rules: adding, limits, repricing flags, availability, merge, checkout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.cart.domain.carts import (
    Availability,
    Cart,
    CartLimits,
    CartStatus,
    CatalogItem,
    Fulfillment,
    FulfillmentMethod,
    cart_token,
    token_hash,
)
from services.cart.domain.pricing import ShippingPolicy
from services.cart.domain.promotions import Evaluation
from tenpo.kit.errors import DomainError

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LIMITS = CartLimits(max_quantity_per_line=10, max_lines=3)
WEB, APP, KIOSK = 1, 2, 3


def item(sku: str, price: int = 1000, tax: int = 10) -> CatalogItem:
    return CatalogItem(sku, f"p-{sku}", f"title {sku}", "", price, None, tax)


def cart(**kwargs: object) -> Cart:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "customer_id": "c1",
        "status": CartStatus.ACTIVE,
        "channel": WEB,
        "store_id": None,
        "created_at": NOW,
        "updated_at": NOW,
        "last_activity_at": NOW,
    }
    values.update(kwargs)
    return Cart(**values)  # type: ignore[arg-type]


def test_adding_a_sku_twice_grows_one_line_up_to_the_limit() -> None:
    c = (
        cart()
        .add("A", 4, item("A"), limits=LIMITS, now=NOW)
        .add("A", 6, item("A"), limits=LIMITS, now=NOW)
    )
    assert [(li.sku, li.quantity) for li in c.lines] == [("A", 10)]
    with pytest.raises(DomainError) as caught:
        c.add("A", 1, item("A"), limits=LIMITS, now=NOW)
    assert caught.value.reason == "LINE_QUANTITY_LIMIT"
    full = cart()
    for sku in "ABC":
        full = full.add(sku, 1, item(sku), limits=LIMITS, now=NOW)
    with pytest.raises(DomainError) as too_many:
        full.add("D", 1, item("D"), limits=LIMITS, now=NOW)
    assert too_many.value.reason == "CART_LINE_LIMIT"


def test_a_line_records_the_touchpoint_that_added_it() -> None:
    c = cart().touched(KIOSK, "tokyo-shibuya", NOW).add("A", 1, item("A"), limits=LIMITS, now=NOW)
    assert (c.lines[0].channel, c.lines[0].store_id, c.channel, c.version) == (
        KIOSK,
        "tokyo-shibuya",
        KIOSK,
        2,
    )


def test_repricing_flags_changes_and_unoffered_skus() -> None:
    c = (
        cart()
        .add("A", 2, item("A", 3000), limits=LIMITS, now=NOW)
        .add("B", 1, item("B"), limits=LIMITS, now=NOW)
    )
    repriced = c.repriced({"A": item("A", 2500), "B": None}, NOW)
    a, b = repriced.lines
    assert (a.unit_price, a.previous_unit_price, a.price_changed) == (2500, 3000, True)
    assert not b.offered and b.subtotal == 0
    back = repriced.repriced({"A": item("A", 3000)}, NOW)
    assert not back.lines[0].price_changed  # back to what the customer saw
    assert not repriced.touched(WEB, None, NOW).lines[0].price_changed
    with pytest.raises(DomainError) as caught:
        repriced.checked_out("o-1", NOW)
    assert caught.value.reason == "LINE_NOT_OFFERED"


def test_availability_per_line_or_unknown() -> None:
    c = (
        cart()
        .add("A", 2, item("A"), limits=LIMITS, now=NOW)
        .add("B", 1, item("B"), limits=LIMITS, now=NOW)
    )
    checked = c.with_availability({"A": 1, "B": 9}, NOW)
    assert [li.availability for li in checked.lines] == [
        Availability.INSUFFICIENT,
        Availability.AVAILABLE,
    ]
    unknown = c.with_availability(None, NOW)
    assert {li.availability for li in unknown.lines} == {Availability.UNKNOWN}


def test_merge_rule() -> None:
    mine = cart().add("A", 9, item("A"), limits=LIMITS, now=NOW).with_code("WINTER10")
    guest = (
        cart(customer_id=None, channel=APP)
        .add("A", 3, item("A"), limits=LIMITS, now=NOW)
        .add("B", 1, item("B"), limits=LIMITS, now=NOW)
        .add("C", 1, item("C"), limits=LIMITS, now=NOW)
        .with_code("APP500")
        .with_code("WINTER10")
        .with_fulfillment(Fulfillment(FulfillmentMethod.PICKUP, "tokyo-ginza"))
    )
    merged = mine.merged_with(guest, CartLimits(max_quantity_per_line=10, max_lines=2), NOW)
    assert [(li.sku, li.quantity, li.channel) for li in merged.lines] == [
        ("A", 10, WEB),
        ("B", 1, APP),
    ]
    assert merged.codes == ("WINTER10", "APP500")
    assert merged.fulfillment.store_id == "tokyo-ginza"
    assert merged.priced_at is None


def test_totals_with_shipping_at_the_standard_rate_and_points() -> None:
    c = (
        cart(loyalty_points=99999)
        .add("A", 1, item("A", 1080, tax=8), limits=LIMITS, now=NOW)
        .with_fulfillment(
            Fulfillment(
                FulfillmentMethod.DELIVERY, None, {"postal_code": "1", "address_lines": ["x"]}
            )
        )
    )
    totals = c.totals(Evaluation(), ShippingPolicy())
    assert (totals.subtotal, totals.shipping, totals.total) == (1080, 550, 1630)
    assert [(t.rate_percent, t.taxable, t.tax) for t in totals.taxes] == [
        (10, 550, 50),
        (8, 1080, 80),
    ]
    assert (totals.loyalty_points, totals.amount_due) == (1630, 0)


def test_guest_token_is_derived_and_checked_in_constant_time() -> None:
    cart_id = uuid.uuid4()
    token = cart_token(b"k" * 32, cart_id)
    assert token == cart_token(b"k" * 32, cart_id) != cart_token(b"j" * 32, cart_id)
    guest = cart(id=cart_id, customer_id=None, guest_token_hash=token_hash(token))
    assert guest.opens_with(token) and not guest.opens_with("") and not guest.opens_with(token[:-1])
    assert len(token) >= 43


def test_a_closed_cart_does_not_change() -> None:
    closed = cart().add("A", 1, item("A"), limits=LIMITS, now=NOW).checked_out("o-1", NOW)
    with pytest.raises(DomainError) as caught:
        closed.add("B", 1, item("B"), limits=LIMITS, now=NOW)
    assert caught.value.reason == "CART_NOT_ACTIVE"
    with pytest.raises(DomainError) as empty:
        cart().checked_out("o-2", NOW)
    assert empty.value.reason == "CART_EMPTY"
    with pytest.raises(DomainError):
        cart(customer_id=None).with_loyalty_points(10)
