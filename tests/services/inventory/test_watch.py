"""WatchAvailability: a snapshot, then every change made through any replica within a second;
many subscribers; streams end cleanly."""

from __future__ import annotations

import asyncio
import time

import grpc

from services.inventory.config import InventorySettings
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, expect_error, new_sku, receive

STORE = "tokyo-shibuya"


async def next_update(stream: object, timeout: float = 1.0) -> api.WatchAvailabilityResponse:
    return await asyncio.wait_for(stream.read(), timeout)  # type: ignore[attr-defined]


async def test_a_kiosk_sees_a_change_made_through_another_replica_within_a_second(
    replicas: list[Stub], tokens: Tokens
) -> None:
    watcher, writer = replicas
    sku = new_sku("W")
    await receive(writer, tokens, sku, STORE, 5)
    await receive(writer, tokens, sku, "dc-kanto", 20)
    kiosk = tokens.device("KIOSK")
    at_store = watcher.WatchAvailability(
        api.WatchAvailabilityRequest(skus=[sku], location_id=STORE), metadata=kiosk
    )
    network = watcher.WatchAvailability(api.WatchAvailabilityRequest(skus=[sku]))
    first = await next_update(at_store, 5)
    assert (first.kind, first.sku, first.available_to_promise) == (
        pb.AVAILABILITY_UPDATE_KIND_SNAPSHOT,
        sku,
        5,
    )
    assert (await next_update(network, 5)).available_to_promise == 25

    started = time.monotonic()
    await writer.ReserveStock(
        api.ReserveStockRequest(
            owner="carts/w", lines=[pb.StockLine(sku=sku, quantity=2, location_id=STORE)]
        ),
        metadata=tokens.staff,
    )
    change = await next_update(at_store)
    assert (change.kind, change.location_id, change.available_to_promise) == (
        pb.AVAILABILITY_UPDATE_KIND_CHANGE,
        STORE,
        3,
    )
    assert time.monotonic() - started < 1.0
    assert (await next_update(network)).available_to_promise == 23

    await receive(
        writer, tokens, sku, "dc-kanto", 7
    )  # another location: only the network view moves
    assert (await next_update(network)).available_to_promise == 30
    await receive(writer, tokens, sku, STORE, 1)
    assert (await next_update(at_store)).available_to_promise == 4
    assert (await next_update(network)).available_to_promise == 31
    at_store.cancel()
    network.cancel()


async def test_many_subscribers_all_see_the_change_and_leave_cleanly(
    inventory: Stub, inventory_host: ServiceHost[InventorySettings], tokens: Tokens
) -> None:
    sku = new_sku("W")
    await receive(inventory, tokens, sku, STORE, 10)
    streams = [
        inventory.WatchAvailability(
            api.WatchAvailabilityRequest(skus=[sku, new_sku("Z")], location_id=STORE)
        )
        for _ in range(100)
    ]
    snapshots = await asyncio.gather(*(next_update(s, 10) for s in streams))
    assert {s.available_to_promise for s in snapshots} == {10}
    await asyncio.gather(*(next_update(s, 10) for s in streams))  # the unknown SKU's snapshot: 0
    await inventory.AdjustStock(
        api.AdjustStockRequest(
            sku=sku, location_id=STORE, quantity=-3, reason=pb.MOVEMENT_REASON_SALE
        ),
        metadata=tokens.staff,
    )
    changes = await asyncio.gather(*(next_update(s, 2) for s in streams))
    assert {c.available_to_promise for c in changes} == {7}
    hub = inventory_host.runtime.parts["availability_hub"]  # type: ignore[union-attr]
    assert hub.watcher_count == 100
    for stream in streams:
        stream.cancel()
    for _ in range(50):
        if hub.watcher_count == 0:
            break
        await asyncio.sleep(0.05)
    assert hub.watcher_count == 0


async def test_stream_ends_cleanly_when_the_service_stops(
    inventory: Stub, inventory_host: ServiceHost[InventorySettings]
) -> None:
    sku = new_sku("W")
    stream = inventory.WatchAvailability(
        api.WatchAvailabilityRequest(skus=[sku], location_id=STORE)
    )
    assert (await next_update(stream, 5)).available_to_promise == 0
    inventory_host.runtime.parts["availability_hub"].close()  # type: ignore[union-attr]
    assert await asyncio.wait_for(stream.read(), 2) is grpc.aio.EOF
    assert await stream.code() is grpc.StatusCode.OK


async def test_watch_validates_its_request(inventory: Stub) -> None:
    await expect_error(
        inventory.WatchAvailability(api.WatchAvailabilityRequest()).read(),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        inventory.WatchAvailability(
            api.WatchAvailabilityRequest(skus=["A"], location_id="nowhere")
        ).read(),
        grpc.StatusCode.NOT_FOUND,
        "LOCATION_NOT_FOUND",
    )
