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


async def _read_to_end(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
        pass


async def test_a_service_that_is_down_is_unavailable_with_a_stable_reason(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Found from outside (the cart service SIGKILLed under load): over HTTP a caller got
    503 ``BACKEND_UNAVAILABLE``, through the gRPC ingress a bare UNAVAILABLE without any
    ErrorInfo, so a device could not tell "the service is down" from the service's own
    UNAVAILABLE answers (``DATABASE_UNAVAILABLE``, ``CART_UNAVAILABLE``) without parsing
    messages. Now the ingress names it like the HTTP side: an open stream whose service goes
    away ends UNAVAILABLE ``BACKEND_UNAVAILABLE``, and so do the calls after it, never with
    the internal address in the message."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    kiosk = tokens.device("KIOSK")
    request = inventory_api.WatchAvailabilityRequest(skus=["SKU-A"])
    async with (
        start_gateway(targets={"inventory": fake_inventory.target}) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(channel)
        open_stream = inventory.WatchAvailability(request, metadata=kiosk)
        assert (await asyncio.wait_for(open_stream.read(), 30)).sku == "SKU-A"
        await fake_inventory.stop()
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await asyncio.wait_for(_read_to_end(open_stream), 30)
        failures = [cut.value]
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(
                    inventory.WatchAvailability(request, metadata=kiosk).read(), 30
                )
            failures.append(refused.value)
    for failure in failures:
        assert failure.code() is grpc.StatusCode.UNAVAILABLE, failure
        assert decode_error(failure).reason == "BACKEND_UNAVAILABLE", failure
        assert fake_inventory.target not in (failure.details() or "")
        assert str(fake_inventory.port) not in (failure.details() or "")


async def test_a_backend_that_is_unreachable_is_unavailable_with_a_stable_reason(
    start_gateway: GatewayFactory,
) -> None:
    """A unary call whose service does not answer at all (nothing listens) is UNAVAILABLE
    ``BACKEND_UNAVAILABLE`` through the ingress too, the same reason as over HTTP."""
    async with (
        start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        call = channel.unary_unary(GET_PRODUCT)
        request = catalog_api.GetProductRequest(id=str(uuid.uuid4())).SerializeToString()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(request, metadata=(("x-api-key", WEB_KEY),), timeout=30)
        over_http = await gw.client.get(
            f"/v1/products/{uuid.uuid4()}", headers={"x-api-key": WEB_KEY}
        )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert decode_error(refused.value).reason == "BACKEND_UNAVAILABLE"
    assert "127.0.0.1:9" not in (refused.value.details() or "")
    assert over_http.status_code == 503
    assert over_http.json()["error"]["details"][0]["reason"] == "BACKEND_UNAVAILABLE"


async def test_anonymous_streams_are_capped_per_client_address(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Found from outside: with only the public web key, one address held 200 open
    WatchAvailability streams through the gRPC ingress (over HTTP the per-address
    connection cap stops it at 128, but one HTTP/2 connection carries any number of
    streams), each a backend stream for up to an hour. Anonymous streams are now counted
    per client address (``stream_max_per_address``), over the ingress and SSE alike; a
    signed-in caller from the same address is counted as herself."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    request = inventory_api.WatchAvailabilityRequest(skus=["SKU-A"])
    keyed = (("x-api-key", WEB_KEY),)
    customer = tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="WEB")
    async with (
        start_gateway(targets={"inventory": fake_inventory.target}, stream_max_per_address=2) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        inventory = inventory_grpc.InventoryServiceStub(channel)
        held = [inventory.WatchAvailability(request, metadata=keyed) for _ in range(2)]
        for call in held:
            assert (await asyncio.wait_for(call.read(), 30)).sku == "SKU-A"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(inventory.WatchAvailability(request, metadata=keyed).read(), 30)
        sse = await gw.client.get(
            "/v1/stream/availability", params={"skus": "SKU-A", "key": WEB_KEY}
        )
        signed_in = inventory.WatchAvailability(
            request, metadata=(("authorization", f"Bearer {customer}"),)
        )
        assert (await asyncio.wait_for(signed_in.read(), 30)).sku == "SKU-A"
        for call in [*held, signed_in]:
            call.cancel()
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert decode_error(refused.value).reason == "STREAMS_EXHAUSTED"
    assert sse.status_code == 429, sse.text
    assert sse.json()["error"]["details"][0]["reason"] == "STREAMS_EXHAUSTED"
