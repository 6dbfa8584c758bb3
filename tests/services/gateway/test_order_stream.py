"""The order service's WatchOrder served as server-sent events (one route in STREAM_ROUTES)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tenpo.devtools.keys import DevKeys
from tenpo.kit.auth import TokenVerifier, current_principal
from tenpo.kit.errors import NotFound
from tenpo.kit.guard import CallGuard, GuardedServer
from tenpo.kit.settings import ServiceSettings
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import order_service_pb2_grpc as api_grpc
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens, auth_settings
from tests.services.gateway.conftest import GatewayFactory


class FakeOrders(api_grpc.OrderServiceServicer):
    def __init__(self) -> None:
        self.changes: asyncio.Queue[int] = asyncio.Queue()
        self.asked_for: list[tuple[str, str]] = []

    async def WatchOrder(
        self, request: api.WatchOrderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.WatchOrderResponse]:
        self.asked_for.append((request.order_id, current_principal().subject))
        if request.order_id != "o-1":
            raise NotFound("no such order", reason="ORDER_NOT_FOUND")
        yield api.WatchOrderResponse(order=pb.Order(id="o-1", status=pb.ORDER_STATUS_PLACED))
        while True:
            status = await self.changes.get()
            yield api.WatchOrderResponse(order=pb.Order(id="o-1", status=status))  # type: ignore[arg-type]


async def sse_data(lines: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for line in lines:
        if line.startswith("data: "):
            found.append(json.loads(line[len("data: ") :]))
            if len(found) == count:
                break
    return found


async def test_order_changes_as_server_sent_events(
    dev_keys: DevKeys, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    verifier = TokenVerifier.from_settings(ServiceSettings(**auth_settings(dev_keys)))  # type: ignore[arg-type]
    server = grpc.aio.server()
    fake = FakeOrders()
    api_grpc.add_OrderServiceServicer_to_server(
        fake,
        GuardedServer(server, CallGuard(verifier)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    customer = tokens.mint(subject="c-1", kind="customer", scopes=["orders:write"], channel="APP")
    headers = {"authorization": f"Bearer {customer}"}
    try:
        async with start_gateway(targets={"order": f"127.0.0.1:{port}"}) as gw:
            async with gw.client.stream(
                "GET", "/v1/stream/order", params={"orderId": "o-1"}, headers=headers
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                (first,) = await asyncio.wait_for(sse_data(lines, 1), 5)
                assert first["order"]["status"] == "ORDER_STATUS_PLACED"
                await fake.changes.put(pb.ORDER_STATUS_COMPLETED)
                (change,) = await asyncio.wait_for(sse_data(lines, 1), 5)
                assert change["order"]["status"] == "ORDER_STATUS_COMPLETED"
            # Another customer's order: a plain HTTP 404 before any event.
            missing = await gw.client.get(
                "/v1/stream/order", params={"orderId": "o-2"}, headers=headers
            )
            assert missing.status_code == 404
            assert missing.json()["error"]["details"][0]["reason"] == "ORDER_NOT_FOUND"
            anonymous = await gw.client.get("/v1/stream/order", params={"orderId": "o-1"})
            assert anonymous.status_code in (401, 403)
            assert fake.asked_for == [("o-1", "c-1"), ("o-2", "c-1")]
            document = (await gw.client.get("/openapi.json")).json()
        assert "/v1/stream/order" in document["paths"]
    finally:
        await server.stop(0)
