"""HTTP details of the ASGI layer: 405 names the allowed methods."""

from __future__ import annotations

from tests.services.gateway.conftest import WEB_KEY, GatewayFactory


async def test_405_carries_allow(start_gateway: GatewayFactory) -> None:
    async with start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw:
        products = await gw.client.put("/v1/products", headers={"x-api-key": WEB_KEY})
        docs = await gw.client.post("/docs")
        missing = await gw.client.put("/v1/nothing-here")
    assert products.status_code == 405
    assert products.headers["allow"] == "GET, POST, OPTIONS"
    assert products.json()["error"]["details"][0]["reason"] == "METHOD_NOT_ALLOWED"
    assert docs.status_code == 405
    assert docs.headers["allow"] == "GET, OPTIONS"
    assert missing.status_code == 404
    assert "allow" not in missing.headers
