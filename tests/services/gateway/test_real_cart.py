"""The gateway in front of the real cart service, which asks the real (seeded) catalog: a
guest cart over HTTP with the web's publishable key, prices from the catalog for the web
channel, a store-only product refused, and the cart token as the only way back."""

from __future__ import annotations

import uuid
from typing import Any

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.common.v1 import common_pb2
from tests.services.conftest import gateway_channel
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, SeededCatalog


async def test_a_guest_cart_over_http_prices_from_the_catalog_and_refuses_store_only_products(
    cart_target: str, seeded_catalog: SeededCatalog, start_gateway: GatewayFactory
) -> None:
    web_products = await seeded_catalog.stub.ListProducts(
        catalog_api.ListProductsRequest(page_size=50), metadata=gateway_channel("WEB")
    )
    sku = web_products.products[0].variants[0].sku
    price = (
        await seeded_catalog.stub.GetPrices(
            catalog_api.GetPricesRequest(skus=[sku]), metadata=gateway_channel("WEB")
        )
    ).prices[0]
    # Every product a kiosk sees (all pages: where the store-only ones fall in the order is
    # not ours to assume).
    kiosk_products: list[Any] = []
    page_token = ""
    while True:
        page = await seeded_catalog.stub.ListProducts(
            catalog_api.ListProductsRequest(page_size=100, page_token=page_token),
            metadata=gateway_channel("KIOSK"),
        )
        kiosk_products.extend(page.products)
        page_token = page.next_page_token
        if not page_token:
            break
    store_only = next(
        p.variants[0].sku for p in kiosk_products if common_pb2.CHANNEL_WEB not in p.channels
    )
    key = {"x-api-key": WEB_KEY}
    async with start_gateway(targets={"cart": cart_target, "catalog": seeded_catalog.target}) as gw:
        created = await gw.client.post(
            "/v1/carts", json={"requestId": str(uuid.uuid4())}, headers=key
        )
        assert created.status_code == 200, created.text
        cart_id, token = created.json()["cart"]["id"], created.json()["cartToken"]
        added = await gw.client.post(
            f"/v1/carts/{cart_id}/lineItems",
            json={"cartToken": token, "sku": sku, "quantity": 2},
            headers=key,
        )
        assert added.status_code == 200, added.text
        line = added.json()["lineItems"][0]
        assert line["unitPrice"]["units"] == str(price.amount.units)
        assert line["title"] == web_products.products[0].title
        assert line["availability"] == "AVAILABILITY_UNKNOWN"
        assert added.json()["totals"]["total"]["units"] == str(2 * price.amount.units)

        refused = await gw.client.post(
            f"/v1/carts/{cart_id}/lineItems",
            json={"cartToken": token, "sku": store_only},
            headers=key,
        )
        assert refused.status_code == 400, refused.text
        details = refused.json()["error"]["details"]
        assert "SKU_NOT_OFFERED" in [d.get("reason") for d in details]

        found = await gw.client.get(
            f"/v1/carts/{cart_id}", params={"cartToken": token}, headers=key
        )
        assert found.status_code == 200 and found.json()["id"] == cart_id
        hidden = await gw.client.get(f"/v1/carts/{cart_id}", headers=key)
        assert hidden.status_code == 404
