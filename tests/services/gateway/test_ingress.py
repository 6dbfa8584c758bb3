"""gRPC ingress details: a rate-limited call carries a ``retry-after`` trailer besides the
ErrorInfo (reason RATE_LIMITED, retry_after_seconds) in its status details; streams count
against the per-principal stream cap shared with the SSE routes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import (
    WEB_KEY,
    GatewayFactory,
    InventoryHandle,
    inventory_api,
    inventory_grpc,
)

GET_PRODUCT = "/tenpo.catalog.v1.CatalogService/GetProduct"


async def test_rate_limited_calls_carry_retry_after(start_gateway: GatewayFactory) -> None:
    async with (
        start_gateway(targets={"catalog": "127.0.0.1:9"}, address_rate=0.01, address_burst=1) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        call = channel.unary_unary(GET_PRODUCT)
        request = catalog_api.GetProductRequest(id="x").SerializeToString()
        codes = []
        limited: grpc.aio.AioRpcError | None = None
        for _ in range(2):
            try:
                await call(request, metadata=(("x-api-key", WEB_KEY),), timeout=10)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
                limited = error
    # The first call passes the limiter (and finds no backend), the second does not.
    assert codes == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert limited is not None
    trailers = dict(limited.trailing_metadata() or ())
    assert int(trailers["retry-after"]) >= 1
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "RATE_LIMITED"
    assert info.metadata["retry_after_seconds"] == trailers["retry-after"]


async def test_ingress_streams_count_against_the_per_principal_stream_cap(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Found from outside: SSE streams were capped per principal, but one token could open
    any number of streams through the gRPC ingress (each a backend stream for up to
    ``stream_max_seconds``). Ingress streams now share the SSE count: the next one past
    ``stream_max_per_principal`` is RESOURCE_EXHAUSTED ``STREAMS_EXHAUSTED`` before any
    backend call, an SSE stream of the same principal too, other principals are not
    affected, and a cancelled stream frees its place."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    alice = tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="WEB")
    bob = tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="WEB")
    request = inventory_api.WatchAvailabilityRequest(skus=["SKU-A"])

    def auth(token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    async with (
        start_gateway(
            targets={"inventory": fake_inventory.target}, stream_max_per_principal=2
        ) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(channel)
        held = [inventory.WatchAvailability(request, metadata=auth(alice)) for _ in range(2)]
        for call in held:
            first = await asyncio.wait_for(call.read(), 30)
            assert first.sku == "SKU-A"
        calls_before = len(fake_inventory.fake.seen_metadata)
        third = inventory.WatchAvailability(request, metadata=auth(alice))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(third.read(), 30)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        error = decode_error(refused.value)
        assert error.reason == "STREAMS_EXHAUSTED"
        assert error.metadata["max_streams"] == "2"
        # One count for both doors: her SSE stream is refused as well.
        sse = await gw.client.get(
            "/v1/stream/availability",
            params={"skus": "SKU-A"},
            headers={"x-api-key": WEB_KEY, "authorization": f"Bearer {alice}"},
        )
        assert sse.status_code == 429, sse.text
        assert sse.json()["error"]["details"][0]["reason"] == "STREAMS_EXHAUSTED"
        assert len(fake_inventory.fake.seen_metadata) == calls_before  # refused before a call
        # Another principal is not affected.
        other = inventory.WatchAvailability(request, metadata=auth(bob))
        assert (await asyncio.wait_for(other.read(), 30)).sku == "SKU-A"
        other.cancel()
        # A cancelled stream frees its place (the gateway sees the cancel asynchronously).
        held.pop().cancel()
        reopened: Any = None
        reasons: list[str | None] = []
        for _ in range(300):
            attempt = inventory.WatchAvailability(request, metadata=auth(alice))
            try:
                await asyncio.wait_for(attempt.read(), 30)
            except grpc.aio.AioRpcError as error:
                reasons.append(decode_error(error).reason)
                await asyncio.sleep(0.1)
                continue
            reopened = attempt
            break
        assert reopened is not None
        assert set(reasons) <= {"STREAMS_EXHAUSTED"}
        reopened.cancel()
        for call in held:
            call.cancel()
