"""The mirror's suggestions: related products of what she tried on, only in sizes the store
can promise now, never what she tried — against the real catalog and inventory services."""

from __future__ import annotations

import uuid
from typing import Any

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import GatewayFactory, InventoryHandle, SeededCatalog

STORE = "tokyo-shibuya"
OTHER_STORE = "tokyo-ginza"
ROUTE = "/v1/mirror/suggestions"


def _mirror(tokens: Tokens, store: str = STORE) -> dict[str, str]:
    return dict(tokens.device("SMART_MIRROR", store=store))


def _handed_off(tokens: Tokens) -> dict[str, str]:
    token = tokens.mint(
        subject=str(uuid.uuid4()),
        kind="customer",
        channel="SMART_MIRROR",
        extra_claims={"dev": "device-smart_mirror-1"},
    )
    return dict(tokens.metadata(token))


async def _tried_with_two_related(catalog: SeededCatalog, tokens: Tokens) -> tuple[Any, list[Any]]:
    """A product with at least two related products (the seed relates every garment)."""
    for product_id in catalog.product_ids:
        response = await catalog.stub.ListRelatedProducts(
            catalog_api.ListRelatedProductsRequest(product_id=product_id, page_size=12),
            metadata=tokens.device("SMART_MIRROR", store=STORE),
        )
        related = [r.product for r in response.related if r.product.id != product_id]
        if len(related) >= 2 and all(len(p.variants) >= 2 for p in related[:2]):
            product = await catalog.stub.GetProduct(
                catalog_api.GetProductRequest(id=product_id),
                metadata=tokens.device("SMART_MIRROR", store=STORE),
            )
            return product.product, related
    raise AssertionError("the seeded catalog relates no product to two others")


async def _stock(client: Any, tokens: Tokens, store: str, sku: str, quantity: int) -> None:
    response = await client.post(
        f"/v1/locations/{store}/stockLevels/{sku}:adjust",
        json={
            "quantity": str(quantity),
            "reason": "MOVEMENT_REASON_RECEIPT",
            "requestId": f"{store}-{sku}-{uuid.uuid4().hex[:6]}",
        },
        headers=dict(tokens.staff),
    )
    assert response.status_code == 200, response.text


async def test_suggestions_only_in_sizes_the_store_has_and_never_what_she_tried(
    seeded_catalog: SeededCatalog,
    inventory_target: str,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    tried, related = await _tried_with_two_related(seeded_catalog, tokens)
    first, second = related[0], related[1]
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": inventory_target}
    ) as gw:
        # The first related product in one size here and another size only in another store;
        # the second one nowhere here.
        await _stock(gw.client, tokens, STORE, first.variants[0].sku, 3)
        await _stock(gw.client, tokens, OTHER_STORE, first.variants[1].sku, 5)
        await _stock(gw.client, tokens, OTHER_STORE, second.variants[0].sku, 5)

        response = await gw.client.get(
            ROUTE, params={"tried": tried.variants[0].sku}, headers=_mirror(tokens)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["unavailable"] == []
        assert body["storeId"] == STORE
        by_id = {s["product"]["id"]: s for s in body["suggestions"]}
        assert first.id in by_id
        assert second.id not in by_id  # nothing of it in this store
        assert tried.id not in by_id
        assert [v["sku"] for v in by_id[first.id]["availableVariants"]] == [first.variants[0].sku]
        assert by_id[first.id]["availableVariants"][0]["availableToPromise"] == "3"
        for suggestion in body["suggestions"]:
            assert suggestion["availableVariants"], "a suggestion is only one the store has"

        # She also tried the first one on: it is no longer suggested.
        both = await gw.client.get(
            ROUTE,
            params={"tried": f"{tried.variants[0].sku},{first.variants[0].sku}"},
            headers=_mirror(tokens),
        )
        assert both.status_code == 200, both.text
        assert first.id not in {s["product"]["id"] for s in both.json()["suggestions"]}

        # The customer whose session was handed off to a mirror there sees the same.
        handed = await gw.client.get(
            ROUTE,
            params={"tried": tried.variants[0].sku, "storeId": STORE},
            headers=_handed_off(tokens),
        )
        assert handed.status_code == 200, handed.text
        assert handed.json()["suggestions"] == body["suggestions"]


async def test_bad_input_and_wrong_callers_are_refused(
    seeded_catalog: SeededCatalog,
    inventory_target: str,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    tried, _ = await _tried_with_two_related(seeded_catalog, tokens)
    sku = tried.variants[0].sku
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": inventory_target}
    ) as gw:
        no_tried = await gw.client.get(ROUTE, headers=_mirror(tokens))
        unknown = await gw.client.get(
            ROUTE, params={"tried": "NO-SUCH-SKU"}, headers=_mirror(tokens)
        )
        too_many = await gw.client.get(
            ROUTE,
            params={"tried": ",".join(f"S{i}" for i in range(11))},
            headers=_mirror(tokens),
        )
        stray = await gw.client.get(
            ROUTE, params={"tried": sku, "near": "1,2"}, headers=_mirror(tokens)
        )
        other_store = await gw.client.get(
            ROUTE, params={"tried": sku, "storeId": STORE}, headers=_mirror(tokens, OTHER_STORE)
        )
        app_session = await gw.client.get(
            ROUTE, params={"tried": sku, "storeId": STORE}, headers=dict(tokens.customer)
        )
        handed_without_store = await gw.client.get(
            ROUTE, params={"tried": sku}, headers=_handed_off(tokens)
        )
        anonymous = await gw.client.get(ROUTE, params={"tried": sku})
    for response, field in (
        (no_tried, "tried"),
        (unknown, "tried"),
        (too_many, "tried"),
        (stray, "near"),
        (handed_without_store, "storeId"),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["metadata"]["field"] == field
    assert other_store.status_code == 403
    assert other_store.json()["error"]["details"][0]["reason"] == "STORE_MISMATCH"
    assert app_session.status_code == 403
    assert app_session.json()["error"]["details"][0]["reason"] == "DEVICE_SESSION_REQUIRED"
    assert anonymous.status_code in (401, 403)


async def test_a_backend_down_is_named_never_a_500(
    seeded_catalog: SeededCatalog,
    fake_inventory: InventoryHandle,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    tried, _ = await _tried_with_two_related(seeded_catalog, tokens)
    sku = tried.variants[0].sku
    await fake_inventory.stop()  # the inventory service is down
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": fake_inventory.target},
        composed_timeout_seconds=2.0,
    ) as gw:
        no_stock = await gw.client.get(ROUTE, params={"tried": sku}, headers=_mirror(tokens))
    assert no_stock.status_code == 200, no_stock.text
    assert no_stock.json()["unavailable"] == ["availability"]
    assert no_stock.json()["suggestions"], "the related products, without sizes"
    assert all("availableVariants" not in s for s in no_stock.json()["suggestions"])

    async with start_gateway(
        targets={"catalog": "127.0.0.1:1", "inventory": fake_inventory.target},
        composed_timeout_seconds=1.0,
    ) as gw:
        no_catalog = await gw.client.get(ROUTE, params={"tried": sku}, headers=_mirror(tokens))
    assert no_catalog.status_code == 200, no_catalog.text
    assert no_catalog.json() == {"storeId": STORE, "suggestions": [], "unavailable": ["related"]}
