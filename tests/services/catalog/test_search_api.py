"""Search, barcode lookup and relations over the seeded demo catalog (Japanese and English)."""

from __future__ import annotations

import grpc
import pytest

from services.catalog.seed import jan_code
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.kit.grpc_errors import decode_error
from tests.services.catalog.test_domain import encode_sgtin96
from tests.services.conftest import gateway_channel

Stub = catalog_service_pb2_grpc.CatalogServiceStub


async def search(
    catalog: Stub, metadata: tuple[tuple[str, str], ...] | None = None, **fields: object
) -> api.SearchProductsResponse:
    metadata = metadata or gateway_channel("WEB")
    return await catalog.SearchProducts(api.SearchProductsRequest(**fields), metadata=metadata)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["スニーカー", "すにーかー", "ｽﾆｰｶｰ", "sneakers", "SNEAKERS"])
async def test_katakana_hiragana_half_width_and_english_find_sneakers(
    seeded_catalog: Stub, query: str
) -> None:
    result = await search(seeded_catalog, query=query, page_size=100)
    assert result.total_size > 0
    codes = {r.product.code for r in result.results}
    assert codes and all(code.startswith("SNK-") for code in codes), codes


async def test_every_word_must_match_and_kanji_works(seeded_catalog: Stub) -> None:
    both = await search(seeded_catalog, query="ハイカット ネイビー", page_size=50)
    assert both.total_size >= 1
    assert all(
        "ハイカット" in r.product.title and "ネイビー" in r.product.title for r in both.results
    )
    kanji = await search(seeded_catalog, query="雪駄", page_size=50)
    assert kanji.total_size > 0
    assert all(r.product.code.startswith("SDL-") for r in kanji.results)
    assert (await search(seeded_catalog, query="スニーカー 雪駄")).total_size == 0


async def test_english_titles_for_english_callers(seeded_catalog: Stub) -> None:
    result = await search(seeded_catalog, query="chino", language_code="en", page_size=5)
    assert result.results
    assert all("Chino" in r.product.title for r in result.results)


async def test_facets_count_the_whole_result_set(seeded_catalog: Stub) -> None:
    result = await search(seeded_catalog, query="tシャツ", page_size=5)
    assert len(result.results) == 5
    facets = {f.field: f for f in result.facets}
    assert set(facets) >= {"category", "brand", "color", "material"}
    assert sum(v.count for v in facets["color"].values) >= result.total_size
    assert sum(v.count for v in facets["brand"].values) == result.total_size
    labels = {v.value: v.label for v in facets["material"].values}
    assert labels.get("cotton") == "コットン"


async def test_filters_sorting_and_pagination(seeded_catalog: Stub) -> None:
    navy = await search(
        seeded_catalog,
        query="スニーカー",
        attribute_filters=[api.AttributeFilter(key="color", values=["navy"])],
        sort=api.SEARCH_SORT_PRICE_ASCENDING,
        page_size=100,
    )
    assert navy.total_size > 0
    assert all(r.product.code.endswith("03") for r in navy.results)  # navy is the 3rd colour
    amounts = [r.from_price.amount.units for r in navy.results]
    assert amounts == sorted(amounts)

    cheap = await search(seeded_catalog, max_price=1_000, page_size=100)
    assert cheap.total_size > 0
    assert all(r.from_price.amount.units <= 1_000 for r in cheap.results)

    seen: list[str] = []
    token = ""
    while True:
        page = await search(seeded_catalog, query="パンツ", page_size=7, page_token=token)
        seen.extend(r.product.id for r in page.results)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == page.total_size

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await search(
            seeded_catalog,
            query="ブーツ",
            page_size=7,
            page_token=token
            or (await search(seeded_catalog, query="パンツ", page_size=7)).next_page_token,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # a token for another query


async def test_sale_prices_show_in_search(seeded_catalog: Stub) -> None:
    # The white colourway (01) is on a 20 % winter sale.
    result = await search(seeded_catalog, query="TEE-0101")
    assert result.total_size == 1
    price = (
        await seeded_catalog.GetPrices(
            api.GetPricesRequest(skus=[result.results[0].product.variants[0].sku]),
            metadata=gateway_channel("WEB"),
        )
    ).prices[0]
    assert price.price_list == "winter-sale"
    assert price.amount.units == int(price.regular_amount.units * 0.8)
    assert result.results[0].from_price.amount.units == price.amount.units


async def test_store_only_products_are_hidden_on_the_web_but_found_by_kiosks(
    seeded_catalog: Stub, tokens: object
) -> None:
    web = await search(seeded_catalog, page_size=100)
    kiosk = await search(seeded_catalog, metadata=tokens.device("KIOSK"), page_size=100)  # type: ignore[attr-defined]
    assert kiosk.total_size > web.total_size


async def test_barcode_lookup_by_jan_and_rfid_tag(seeded_catalog: Stub) -> None:
    by_jan = await seeded_catalog.LookupByBarcode(
        api.LookupByBarcodeRequest(code=jan_code(1)), metadata=gateway_channel("WEB")
    )
    assert by_jan.matched_type == pb.BARCODE_TYPE_JAN
    assert by_jan.variant.sku == "SNK-0101-240"
    assert by_jan.product.code == "SNK-0101"
    tag = encode_sgtin96("0" + jan_code(1), serial=987654)
    by_tag = await seeded_catalog.LookupByBarcode(
        api.LookupByBarcodeRequest(code=tag), metadata=gateway_channel("WEB")
    )
    assert by_tag.variant.sku == "SNK-0101-240"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seeded_catalog.LookupByBarcode(
            api.LookupByBarcodeRequest(code="4900000000000"), metadata=gateway_channel("WEB")
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_mirror_suggests_what_goes_with_a_t_shirt(
    seeded_catalog: Stub, tokens: object
) -> None:
    mirror = tokens.device("SMART_MIRROR")  # type: ignore[attr-defined]
    tee = (await search(seeded_catalog, metadata=mirror, query="TEE-0102")).results[0].product
    related = await seeded_catalog.ListRelatedProducts(
        api.ListRelatedProductsRequest(product_id=tee.id, types=[pb.RELATION_TYPE_GOES_WITH]),
        metadata=mirror,
    )
    assert related.related
    assert all(r.type == pb.RELATION_TYPE_GOES_WITH for r in related.related)
    assert all(r.product.code.startswith("PNT-") for r in related.related)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sort": 999}, "sort"),
        ({"query": "あ" * 201}, "query"),
        ({"min_price": 900, "max_price": 100}, "min_price"),
        ({"brands": ["b"] * 51}, "brands"),
        ({"page_size": -1}, "page_size"),
    ],
)
async def test_bad_searches_are_invalid_arguments_naming_the_field(
    seeded_catalog: Stub,
    fields: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await search(seeded_catalog, **fields)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in decode_error(caught.value).field_violations] == [field]
