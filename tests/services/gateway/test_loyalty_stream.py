"""The customer's WatchBalance served as server-sent events (one route in STREAM_ROUTES)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tenpo.customer.v1 import loyalty_service_pb2 as api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as api_grpc
from tenpo.devtools.keys import DevKeys
from tenpo.kit.auth import TokenVerifier, current_principal
from tenpo.kit.guard import CallGuard, GuardedServer
from tenpo.kit.settings import ServiceSettings
from tests.services.conftest import Tokens, auth_settings
from tests.services.gateway.conftest import GatewayFactory


class FakeLoyalty(api_grpc.LoyaltyServiceServicer):
    def __init__(self) -> None:
        self.changes: asyncio.Queue[int] = asyncio.Queue()
        self.asked_for: list[tuple[str, str]] = []

    async def WatchBalance(
        self, request: api.WatchBalanceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.WatchBalanceResponse]:
        self.asked_for.append((request.customer_id, current_principal().subject))
        yield api.WatchBalanceResponse(
            balance=api.LoyaltyBalance(customer_id="c-1", balance=10), snapshot=True
        )
        while True:
            balance = await self.changes.get()
            yield api.WatchBalanceResponse(
                balance=api.LoyaltyBalance(customer_id="c-1", balance=balance)
            )


async def _data(lines: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for line in lines:
        if line.startswith("data: "):
            found.append(json.loads(line[len("data: ") :]))
            if len(found) == count:
                break
    return found


async def test_balance_changes_as_server_sent_events(
    dev_keys: DevKeys, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    verifier = TokenVerifier.from_settings(ServiceSettings(**auth_settings(dev_keys)))  # type: ignore[arg-type]
    server = grpc.aio.server()
    fake = FakeLoyalty()
    api_grpc.add_LoyaltyServiceServicer_to_server(
        fake,
        GuardedServer(server, CallGuard(verifier)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    customer = tokens.mint(subject="c-1", kind="customer", scopes=["profile:read"], channel="APP")
    try:
        async with start_gateway(targets={"customer": f"127.0.0.1:{port}"}) as gw:
            async with gw.client.stream(
                "GET",
                "/v1/stream/loyalty-balance",
                params={"customerId": "me"},
                headers={"authorization": f"Bearer {customer}"},
            ) as response:
                assert response.status_code == 200
                lines = response.aiter_lines()
                (snapshot,) = await asyncio.wait_for(_data(lines, 1), 5)
                assert snapshot["snapshot"] is True and snapshot["balance"]["balance"] == "10"
                await fake.changes.put(55)
                (change,) = await asyncio.wait_for(_data(lines, 1), 5)
                assert change["balance"]["balance"] == "55"
            assert fake.asked_for == [("me", "c-1")]
            anonymous = await gw.client.get(
                "/v1/stream/loyalty-balance", params={"customerId": "me"}
            )
            assert anonymous.status_code in (401, 403)
    finally:
        await server.stop(0)
