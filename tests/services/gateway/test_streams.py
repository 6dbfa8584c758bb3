"""Live updates: inventory's WatchAvailability as server-sent events, and streaming and unary
calls through the gRPC ingress (with health and reflection on the same port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import (
    WEB_KEY,
    GatewayFactory,
    InventoryHandle,
    SeededCatalog,
    inventory_api,
    inventory_grpc,
)


async def _events(lines: Any, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
            if len(events) == count:
                return events
    return events


async def test_availability_as_server_sent_events(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    fake_inventory.fake.stock.update({"SKU-A": 5, "SKU-B": 0})
    async with start_gateway(targets={"inventory": fake_inventory.target}) as gw:
        async with gw.client.stream(
            "GET",
            "/v1/stream/availability",
            params=[("skus", "SKU-A"), ("skus", "SKU-B")],
            headers={"x-api-key": WEB_KEY},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            snapshot = await asyncio.wait_for(_events(lines, 2), 5)
            assert [(e["sku"], e.get("availableToPromise", "0")) for e in snapshot] == [
                ("SKU-A", "5"),
                ("SKU-B", "0"),
            ]
            await fake_inventory.fake.updates.put(("SKU-B", 3))
            (change,) = await asyncio.wait_for(_events(lines, 1), 5)
            assert change["sku"] == "SKU-B"
            assert change["availableToPromise"] == "3"
        # The stream is in the OpenAPI document, its query from the request message.
        document = (await gw.client.get("/openapi.json")).json()
    parameters = document["paths"]["/v1/stream/availability"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == {"skus", "locationId", "key"}


async def test_stream_errors_before_the_first_event_are_http_errors(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    async with start_gateway(targets={"inventory": fake_inventory.target}) as gw:
        no_skus = await gw.client.get("/v1/stream/availability", headers={"x-api-key": WEB_KEY})
        anonymous = await gw.client.get("/v1/stream/availability", params={"skus": "A"})
        async with gw.client.stream(
            "GET", "/v1/stream/availability", params={"skus": "A", "key": WEB_KEY}
        ) as keyed_in_query:
            keyed_status = keyed_in_query.status_code
    assert keyed_status == 200  # EventSource cannot send headers
    assert no_skus.status_code == 400
    assert no_skus.json()["error"]["details"][0]["reason"] == "SKUS_REQUIRED"
    assert anonymous.status_code == 401


async def test_grpc_ingress_streams_and_unary_calls(
    seeded_catalog: SeededCatalog,
    fake_inventory: InventoryHandle,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    fake_inventory.fake.stock["SKU-K"] = 7
    async with (
        start_gateway(
            targets={"catalog": seeded_catalog.target, "inventory": fake_inventory.target}
        ) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        # A kiosk with its device token: server streaming through the gateway.
        inventory = inventory_grpc.InventoryServiceStub(channel)
        call = inventory.WatchAvailability(
            inventory_api.WatchAvailabilityRequest(skus=["SKU-K"]),
            metadata=tokens.device("KIOSK"),
        )
        first = await asyncio.wait_for(call.read(), 5)
        assert (first.sku, first.available_to_promise) == ("SKU-K", 7)
        await fake_inventory.fake.updates.put(("SKU-K", 6))
        second = await asyncio.wait_for(call.read(), 5)
        assert second.available_to_promise == 6
        call.cancel()
        assert fake_inventory.fake.seen_metadata[-1]["authorization"].startswith("Bearer ")

        # Unary, anonymous with the web key; backend errors keep their details.
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        product = await catalog.GetProduct(
            catalog_api.GetProductRequest(id=seeded_catalog.product_ids[0]),
            metadata=(("x-api-key", WEB_KEY),),
        )
        assert product.product.id == seeded_catalog.product_ids[0]
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await catalog.GetProduct(
                catalog_api.GetProductRequest(id="not-a-uuid"),
                metadata=(("x-api-key", WEB_KEY),),
            )
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        from tenpo.kit.grpc_errors import decode_error

        assert decode_error(invalid.value).reason == "ID_INVALID"

        # No credentials, and writes with only a publishable key, are refused here.
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await catalog.GetProduct(catalog_api.GetProductRequest(id="x"))
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as keyed_write:
            await catalog.DeleteProduct(
                catalog_api.DeleteProductRequest(id=seeded_catalog.product_ids[0]),
                metadata=(("x-api-key", WEB_KEY),),
            )
        assert decode_error(keyed_write.value).reason == "AUTHENTICATION_REQUIRED"

        # Health and reflection answer for the proxied services.
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tenpo.catalog.v1.CatalogService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert {
            "tenpo.catalog.v1.CatalogService",
            "tenpo.inventory.v1.InventoryService",
        } <= names
        files = reflection.ServerReflectionInfo(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="tenpo.catalog.v1.CatalogService"
                    )
                ]
            )
        )
        found = [r async for r in files]
        assert found[0].file_descriptor_response.file_descriptor_proto


async def test_draining_ends_open_streams_cleanly(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    fake_inventory.fake.stock["SKU-D"] = 1
    async with start_gateway(targets={"inventory": fake_inventory.target}) as gw:
        assert gw.host.runtime is not None
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            call = inventory_grpc.InventoryServiceStub(channel).WatchAvailability(
                inventory_api.WatchAvailabilityRequest(skus=["SKU-D"]),
                metadata=tokens.device("KIOSK"),
            )
            await asyncio.wait_for(call.read(), 5)
            async with gw.client.stream(
                "GET",
                "/v1/stream/availability",
                params={"skus": "SKU-D"},
                headers={"x-api-key": WEB_KEY},
            ) as response:
                lines = response.aiter_lines()
                await asyncio.wait_for(_events(lines, 1), 5)
                for start_drain in gw.host.runtime.on_drain:
                    await start_drain()
                rest = [line async for line in lines]
            assert "event: end" in rest
            assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
            assert await call.code() is grpc.StatusCode.OK
            health = await gw.client.get("/healthz")
            assert health.status_code == 503
            assert (await gw.client.get("/readyz")).status_code == 503
            # Alive while draining: the kubelet must not restart a gateway that drains.
            assert (await gw.client.get("/livez")).status_code == 200


async def test_grpc_ingress_client_streaming_import(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    from tenpo.catalog.v1 import resources_pb2

    code = f"GW-IMP-{uuid.uuid4().hex[:6].upper()}"

    async def rows() -> Any:
        for n, size in enumerate(("S", "M")):
            yield catalog_api.ImportProductsRequest(
                product=resources_pb2.Product(
                    code=f"{code}-{size}",
                    titles=resources_pb2.LocalizedText(
                        translations={"ja": f"テスト {size}", "en": f"Test {size}"}
                    ),
                    brand="Gateway",
                    variants=[resources_pb2.Variant(sku=f"{code}-{size}-1")],
                ),
                row_number=n + 1,
            )

    async with (
        start_gateway(targets={"catalog": seeded_catalog.target}) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        summary = await catalog.ImportProducts(rows(), metadata=tokens.staff)
        with pytest.raises(grpc.aio.AioRpcError) as keyed:
            await catalog.ImportProducts(rows(), metadata=(("x-api-key", WEB_KEY),))
    assert (summary.created, summary.failed) == (2, 0), summary
    assert keyed.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_one_principal_holds_at_most_stream_max_per_principal_open_streams(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Found from outside: one customer token opened 107 order streams from one address
    (only the per-address connection cap stopped it; more addresses, more streams), each a
    backend stream polling the database. A signed-in principal now holds at most
    ``stream_max_per_principal`` open streams, wherever they come from; the next is 429
    STREAMS_EXHAUSTED before any backend call, and a closed stream frees its place."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    alice = tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="WEB")
    bob = tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="WEB")

    def headers(token: str) -> dict[str, str]:
        return {"x-api-key": WEB_KEY, "authorization": f"Bearer {token}"}

    params = [("skus", "SKU-A")]
    async with start_gateway(
        targets={"inventory": fake_inventory.target}, stream_max_per_principal=2
    ) as gw:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):
                opened = await held.enter_async_context(
                    gw.client.stream(
                        "GET", "/v1/stream/availability", params=params, headers=headers(alice)
                    )
                )
                assert opened.status_code == 200
            calls_before = len(fake_inventory.fake.seen_metadata)
            third = await gw.client.get(
                "/v1/stream/availability", params=params, headers=headers(alice)
            )
            assert third.status_code == 429, third.text
            error = third.json()["error"]
            assert error["details"][0]["reason"] == "STREAMS_EXHAUSTED"
            assert error["details"][0]["metadata"]["max_streams"] == "2"
            assert len(fake_inventory.fake.seen_metadata) == calls_before  # refused before the call
            # Another principal is not affected.
            async with gw.client.stream(
                "GET", "/v1/stream/availability", params=params, headers=headers(bob)
            ) as other:
                assert other.status_code == 200
        # Both of alice's streams are closed: her places are free again (the gateway sees
        # the disconnects asynchronously, so this is polled).
        for _ in range(200):
            async with gw.client.stream(
                "GET", "/v1/stream/availability", params=params, headers=headers(alice)
            ) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status_code == 200


async def test_a_stream_whose_service_goes_away_ends_unavailable(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    """Checked from outside (the order service killed under an open order stream): an open
    stream ends with ``event: error`` carrying 503 UNAVAILABLE, and a new one is a plain
    503 before any event — never a 500 or a stream that hangs."""
    fake_inventory.fake.stock.update({"SKU-A": 5})
    params = {"skus": "SKU-A", "key": WEB_KEY}
    async with start_gateway(targets={"inventory": fake_inventory.target}) as gw:
        async with gw.client.stream("GET", "/v1/stream/availability", params=params) as open_:
            assert open_.status_code == 200
            lines = open_.aiter_lines()
            assert len(await _events(lines, 1)) == 1
            await fake_inventory.stop()
            tail = [line async for line in lines]
        fresh = await gw.client.get("/v1/stream/availability", params=params)
    assert "event: error" in tail, tail
    error = json.loads(tail[tail.index("event: error") + 1].removeprefix("data: "))["error"]
    assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
    assert fresh.status_code == 503
    assert fresh.json()["error"]["status"] == "UNAVAILABLE"
