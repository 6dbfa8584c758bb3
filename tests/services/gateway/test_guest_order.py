"""A guest's checkout over HTTP: POST /v1/orders answers the whole PlaceOrderResponse, so
the order token (her only way back to the order) reaches her, and GET /v1/orders/{id}
with it opens the order (an outside-in attack found the token dropped by the route's
response_body)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from tenpo.devtools.keys import DevKeys
from tenpo.kit.auth import TokenVerifier
from tenpo.kit.errors import NotFound
from tenpo.kit.guard import CallGuard, GuardedServer
from tenpo.kit.settings import ServiceSettings
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import order_service_pb2_grpc as api_grpc
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import auth_settings
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory

ORDER_ID = "3f1c2a9e-6a51-4b0c-9d59-1b2f7e0c4d11"
TOKEN = "guest-order-token-from-the-order-service"


class GuestOrders(api_grpc.OrderServiceServicer):
    """PlaceOrder answers a guest's order with its token; GetOrder opens it only with it."""

    async def PlaceOrder(
        self, request: api.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> api.PlaceOrderResponse:
        order = pb.Order(id=ORDER_ID, cart_id=request.cart_id, status=pb.ORDER_STATUS_PLACED)
        return api.PlaceOrderResponse(order=order, order_token=TOKEN)

    async def GetOrder(
        self, request: api.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> api.GetOrderResponse:
        if (request.order_id, request.order_token) != (ORDER_ID, TOKEN):
            raise NotFound("no such order", reason="ORDER_NOT_FOUND")
        return api.GetOrderResponse(order=pb.Order(id=ORDER_ID, status=pb.ORDER_STATUS_PLACED))


@asynccontextmanager
async def order_service(dev_keys: DevKeys) -> AsyncIterator[str]:
    verifier = TokenVerifier.from_settings(ServiceSettings(**auth_settings(dev_keys)))  # type: ignore[arg-type]
    server = grpc.aio.server()
    api_grpc.add_OrderServiceServicer_to_server(
        GuestOrders(),
        GuardedServer(server, CallGuard(verifier)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_a_guest_gets_her_order_token_over_http_and_reads_her_order_with_it(
    dev_keys: DevKeys, start_gateway: GatewayFactory
) -> None:
    guest = {"x-api-key": WEB_KEY}
    async with order_service(dev_keys) as target, start_gateway(targets={"order": target}) as gw:
        placed = await gw.client.post(
            "/v1/orders",
            headers=guest,
            json={
                "cartId": "c-1",
                "cartEtag": "3",
                "payment": {"method": "PAYMENT_METHOD_CARD", "cardToken": "4242424242424242"},
                "requestId": "r-1",
                "cartToken": "cart-token",
                "contactEmail": "guest@example.jp",
            },
        )
        assert placed.status_code == 200, placed.text
        body = placed.json()
        assert body["orderToken"] == TOKEN
        assert body["order"]["id"] == ORDER_ID
        mine = await gw.client.get(
            f"/v1/orders/{ORDER_ID}", params={"orderToken": body["orderToken"]}, headers=guest
        )
        without = await gw.client.get(f"/v1/orders/{ORDER_ID}", headers=guest)
        document = (await gw.client.get("/openapi.json")).json()
    assert mine.status_code == 200, mine.text
    assert mine.json()["id"] == ORDER_ID
    assert without.status_code == 404
    assert without.json()["error"]["details"][0]["reason"] == "ORDER_NOT_FOUND"
    # The contract says so too: the 200 of PlaceOrder is the whole response.
    ok = document["paths"]["/v1/orders"]["post"]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/tenpo.order.v1.PlaceOrderResponse"}
