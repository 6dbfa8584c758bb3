"""Catalog domain rules: text folding, barcodes, prices and tax, lifecycle, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.catalog import domain as d
from services.catalog.seed import jan_code
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_text_folding_matches_katakana_hiragana_and_half_width() -> None:
    assert d.normalize_text("スニーカー") == d.normalize_text("すにーかー")
    assert d.normalize_text("ｽﾆｰｶｰ") == d.normalize_text("スニーカー")
    assert d.normalize_text("ＳＮＥＡＫＥＲＳ  Low") == "sneakers low"
    assert d.query_terms("白い　スニーカー") == ["白い", "すにーかー"]


def test_language_choice() -> None:
    assert d.pick_language("", "en-US,en;q=0.9") == "en"
    assert d.pick_language("ja", "en-US") == "ja"
    assert d.pick_language("", "fr-FR") == "ja"
    assert d.localized({"en": "Sneakers"}, "ja") == "Sneakers"
    assert d.localized({"ja": "スニーカー", "en": "Sneakers"}, "en") == "Sneakers"


def test_gtin_check_digits() -> None:
    assert d.normalize_gtin("4901234567894") == "04901234567894"
    assert d.normalize_gtin("4901234567890") is None  # wrong check digit
    assert d.normalize_gtin("036000291452") == "00036000291452"  # UPC-A
    with pytest.raises(InvalidArgument) as caught:
        d.validate_barcode(d.BarcodeType.JAN, "4901234567890", "code")
    assert caught.value.reason == "BARCODE_INVALID"


def encode_sgtin96(gtin14: str, serial: int) -> str:
    """Test helper: GS1 SGTIN-96 encoding with a 7-digit company prefix (partition 5)."""
    company, item = gtin14[1:8], gtin14[0] + gtin14[8:13]
    bits = (0x30 << 88) | (1 << 85) | (5 << 82) | (int(company) << 58) | (int(item) << 38) | serial
    return f"{bits:024x}"


def test_sgtin96_tags_resolve_to_their_gtin() -> None:
    gtin = d.normalize_gtin(jan_code(1))
    assert gtin is not None
    tag = encode_sgtin96(gtin, serial=123456)
    assert d.sgtin96_to_gtin(tag) == gtin
    assert d.sgtin96_to_gtin("e2" + tag[2:]) is None  # not an SGTIN-96 header


def entry(amount: int, **kwargs: object) -> d.PriceEntry:
    return d.PriceEntry(uuid.uuid4(), "SKU-1", d.Money("JPY", Decimal(amount)), **kwargs)  # type: ignore[arg-type]


def test_sale_price_applies_within_its_window_and_keeps_the_regular_price() -> None:
    regular = entry(10_000)
    sale = entry(
        8_000,
        price_list="sale",
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=1),
    )
    during = d.resolve_price([regular, sale], channel=1, currency="JPY", at=NOW)
    assert during is not None
    assert during.applied is sale
    assert during.regular is regular
    after = d.resolve_price([regular, sale], channel=1, currency="JPY", at=NOW + timedelta(days=2))
    assert after is not None
    assert after.applied is regular
    assert after.regular is None
    assert d.resolve_price([regular], channel=1, currency="USD", at=NOW) is None


def test_channel_price_beats_the_all_channel_price() -> None:
    everywhere = entry(10_000)
    kiosk = entry(9_500, channel=3)
    assert d.resolve_price([everywhere, kiosk], channel=3, currency="JPY", at=NOW).applied is kiosk  # type: ignore[union-attr]
    assert (
        d.resolve_price([everywhere, kiosk], channel=1, currency="JPY", at=NOW).applied
        is everywhere
    )  # type: ignore[union-attr]


def test_consumption_tax_is_rounded_down() -> None:
    assert d.tax_included(Decimal(1_100), d.TaxClass.STANDARD, "JPY") == Decimal(100)
    assert d.tax_included(Decimal(1_080), d.TaxClass.REDUCED, "JPY") == Decimal(80)
    assert d.tax_included(Decimal(999), d.TaxClass.STANDARD, "JPY") == Decimal(90)  # 90.8 → 90
    assert d.tax_included(Decimal(500), d.TaxClass.EXEMPT, "JPY") == Decimal(0)


def product(**kwargs: object) -> d.Product:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "code": "SNK-1",
        "titles": {"ja": "スニーカー", "en": "Sneakers"},
        "channels": frozenset({1}),
        "variants": (d.Variant("SNK-1-27"),),
    }
    values.update(kwargs)
    return d.Product(**values)  # type: ignore[arg-type]


def test_lifecycle_transitions() -> None:
    published = product().transition(d.ProductStatus.PUBLISHED, NOW)
    assert published.status is d.ProductStatus.PUBLISHED
    assert published.published_at == NOW
    archived = published.transition(d.ProductStatus.ARCHIVED, NOW)
    with pytest.raises(FailedPrecondition) as caught:
        archived.transition(d.ProductStatus.DRAFT, NOW)
    assert caught.value.reason == "INVALID_STATUS_TRANSITION"
    with pytest.raises(FailedPrecondition) as not_ready:
        product(variants=(), channels=frozenset()).transition(d.ProductStatus.PUBLISHED, NOW)
    assert {v.field for v in not_ready.value.field_violations} == {
        "product.variants",
        "product.channels",
    }


def test_visibility() -> None:
    draft = product()
    live = draft.transition(d.ProductStatus.PUBLISHED, NOW)
    assert not draft.is_visible_to(staff=False, channel=1)
    assert draft.is_visible_to(staff=True, channel=0)
    assert live.is_visible_to(staff=False, channel=1)
    assert not live.is_visible_to(staff=False, channel=4)  # not in the mirror assortment


def test_validation_reports_every_problem() -> None:
    bad = product(
        code="bad code!",
        variants=(
            d.Variant("A-1", barcodes=(d.Barcode(d.BarcodeType.JAN, "4901234567890"),)),
            d.Variant("A-1"),
        ),
        attributes=(d.AttributeValue("material", "silk"),),
    )
    definitions = {
        "material": d.AttributeDefinition(
            "material", d.AttributeType.ENUM, {"ja": "素材"}, options={"cotton": {"ja": "綿"}}
        )
    }
    with pytest.raises(InvalidArgument) as caught:
        d.validate_product(bad, definitions)
    fields = {v.field for v in caught.value.field_violations}
    assert {
        "product.code",
        "product.variants[1].sku",
        "product.variants[0].barcodes[0].value",
        "product.attributes[0]",
    } <= fields


def test_category_cycles_are_refused() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    parents = {a: None, b: a, c: b}
    d.ensure_no_cycle(c, a, parents)
    with pytest.raises(FailedPrecondition):
        d.ensure_no_cycle(a, c, parents)


def test_search_defaults_follow_the_caller() -> None:
    shopper = d.SearchQuery.build(text=" スニーカー ", staff=False, viewer_channel=3, channel=1)
    assert shopper.channel == 3  # a shopper cannot search another channel's assortment
    assert shopper.statuses == [int(d.ProductStatus.PUBLISHED)]
    assert shopper.sort is d.SearchSort.RELEVANCE
    assert shopper.currency == "JPY"
    assert d.SearchQuery.build(text="", staff=False, viewer_channel=1).sort is d.SearchSort.NEWEST
    staff = d.SearchQuery.build(text="", staff=True, viewer_channel=7, currency="usd")
    assert (staff.channel, staff.currency) == (None, "USD")  # every channel
    assert d.SearchQuery.build(text="", staff=True, viewer_channel=7, channel=2).channel == 2


@pytest.mark.parametrize(
    ("criteria", "reason", "field"),
    [
        ({"text": "x" * 201}, "QUERY_TOO_LONG", "query"),
        ({"text": "a b c d e f g h i"}, "QUERY_TOO_LONG", "query"),
        ({"min_price": -1}, "PRICE_RANGE_INVALID", "min_price"),
        ({"min_price": 500, "max_price": 100}, "PRICE_RANGE_INVALID", "min_price"),
        ({"brands": ["b"] * 51}, "TOO_MANY_ITEMS", "brands"),
        ({"category_ids": [uuid.uuid4()] * 21}, "TOO_MANY_ITEMS", "category_ids"),
        ({"attribute_filters": [("k", ["v"])] * 21}, "TOO_MANY_ITEMS", "attribute_filters"),
        ({"sort": 999}, "ENUM_INVALID", "sort"),
    ],
)
def test_bad_searches_name_the_field(criteria: dict, reason: str, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidArgument) as caught:
        d.SearchQuery.build(**{"text": "", "staff": False, "viewer_channel": 1, **criteria})
    assert caught.value.reason == reason
    assert [v.field for v in caught.value.field_violations] == [field]


def test_search_pages_end_and_stop_deep() -> None:
    query = d.SearchQuery.build(text="", staff=False, viewer_channel=1, limit=10)
    assert query.at_offset(20).next_offset(35) == 30
    assert query.at_offset(30).next_offset(35) is None
    assert query.at_offset(0).fingerprint() == query.at_offset(10).fingerprint()
    with pytest.raises(InvalidArgument) as caught:
        query.at_offset(d.MAX_SEARCH_OFFSET + 1)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
