"""The storefront product view: one request, catalog and inventory in parallel, and the rest
of the page when a backend is down."""

from __future__ import annotations

from tests.services.gateway.conftest import (
    WEB_KEY,
    GatewayFactory,
    InventoryHandle,
    SeededCatalog,
)

KEY = {"x-api-key": WEB_KEY}
NEAR = "35.6595,139.7005"  # Shibuya


async def test_product_page_with_prices_related_and_nearby_stock(
    seeded_catalog: SeededCatalog, fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    product_id = seeded_catalog.product_ids[0]
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": fake_inventory.target}
    ) as gw:
        plain = (await gw.client.get(f"/v1/products/{product_id}", headers=KEY)).json()
        sku = plain["variants"][0]["sku"]
        fake_inventory.fake.stock[sku] = 4
        response = await gw.client.get(
            f"/v1/storefront/products/{product_id}",
            params={"near": NEAR, "language_code": "en"},
            headers=KEY,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["unavailable"] == []
        assert page["product"]["id"] == product_id
        assert page["product"]["title"] != plain["title"]  # English, the plain one Japanese
        assert {p["sku"] for p in page["prices"]} <= {v["sku"] for v in plain["variants"]}
        assert page["prices"], "the seeded catalog prices every variant"
        assert isinstance(page["related"], list)
        stores = page["nearbyStores"]
        assert [s["location"]["id"] for s in stores] == ["store-shibuya", "store-ginza"]
        assert {"sku": sku, "quantity": "4"} in stores[0]["available"]

        missing = await gw.client.get(
            "/v1/storefront/products/00000000-0000-0000-0000-000000000000", headers=KEY
        )
        assert missing.status_code == 404
        bad_near = await gw.client.get(
            f"/v1/storefront/products/{product_id}", params={"near": "north"}, headers=KEY
        )
        assert bad_near.status_code == 400
        anonymous = await gw.client.get(f"/v1/storefront/products/{product_id}")
        assert anonymous.status_code == 401


async def test_inventory_down_leaves_the_rest_of_the_page(
    seeded_catalog: SeededCatalog, fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    product_id = seeded_catalog.product_ids[1]
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": fake_inventory.target},
        composed_timeout_seconds=1.0,
    ) as gw:
        healthy = await gw.client.get(
            f"/v1/storefront/products/{product_id}", params={"near": NEAR}, headers=KEY
        )
        assert healthy.json()["unavailable"] == []
        await fake_inventory.stop()
        response = await gw.client.get(
            f"/v1/storefront/products/{product_id}", params={"near": NEAR}, headers=KEY
        )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["unavailable"] == ["availability"]
    assert "nearbyStores" not in page
    assert page["product"]["id"] == product_id
    assert page["prices"]
    # Within the view's deadline, not the default backend timeout.
    assert response.elapsed.total_seconds() < 2.0


async def test_view_degrades_when_inventory_is_not_configured(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory
) -> None:
    product_id = seeded_catalog.product_ids[2]
    async with start_gateway(targets={"catalog": seeded_catalog.target}) as gw:
        with_near = await gw.client.get(
            f"/v1/storefront/products/{product_id}", params={"near": NEAR}, headers=KEY
        )
        without_near = await gw.client.get(f"/v1/storefront/products/{product_id}", headers=KEY)
    assert with_near.json()["unavailable"] == ["availability"]
    assert without_near.json()["unavailable"] == []  # nobody asked for nearby stock


async def test_catalog_down_is_an_error(start_gateway: GatewayFactory) -> None:
    async with start_gateway(
        targets={"catalog": "127.0.0.1:1"}, composed_timeout_seconds=0.5
    ) as gw:
        response = await gw.client.get("/v1/storefront/products/abc", headers=KEY)
    assert response.status_code in (503, 504)
    assert response.json()["error"]["status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
