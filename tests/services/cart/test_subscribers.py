"""Events from elsewhere, through real NATS: a catalog price change reprices carts holding the
SKU; an erased customer's cart goes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest_asyncio
from google.protobuf.message import Message

from services.cart.config import CartSettings
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import cart_service_pb2_grpc
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.devtools.keys import DevKeys
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.kit.server import ServiceHost
from tests.services.cart.conftest import (
    Clients,
    Upstreams,
    anonymous_web,
    customer,
    new_sku,
    start_cart,
)
from tests.services.conftest import Tokens


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_url, name="test-cart-sources")
    await bus.connect()
    for service in ("catalog", "customer"):
        await bus.ensure_stream(service)
    try:
        yield bus
    finally:
        await bus.close()


async def publish(bus: EventBus, message: Message) -> None:
    """As the producer's outbox relay would."""
    event_id = str(uuid.uuid4())
    await bus.publish(
        event_subject(message),
        message.SerializeToString(),
        {
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
            OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
        },
        msg_id=event_id,
    )


async def test_a_price_event_reprices_the_carts_holding_the_sku(
    cart: Clients, upstreams: Upstreams, tokens: Tokens, bus: EventBus
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 5000)
    app = customer(tokens, f"cust-{uuid.uuid4().hex[:6]}")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=app)
    upstreams.catalog.products[sku].price = 3900
    await publish(bus, catalog_events.PriceChanged(sku=sku))
    async with asyncio.timeout(30):
        while True:
            seen = await cart.carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
            if seen.cart.line_items[0].unit_price.units == 3900:
                break
            await asyncio.sleep(0.1)
    assert seen.cart.line_items[0].previous_unit_price.units == 5000


async def test_an_erased_customers_carts_go(
    cart: Clients, upstreams: Upstreams, tokens: Tokens, bus: EventBus
) -> None:
    subject = f"cust-{uuid.uuid4().hex[:6]}"
    app = customer(tokens, subject)
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await publish(bus, customer_events.CustomerErased(customer_id=subject))
    async with asyncio.timeout(30):
        while True:
            try:
                await cart.carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    break
                raise
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def caching_cart(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams
) -> AsyncIterator[ServiceHost[CartSettings]]:
    """A cart that keeps the catalog's answers for ten minutes (the default is 30 s)."""
    async for host in start_cart(
        database_url, nats_url, dev_keys, upstreams, catalog_cache_seconds=600
    ):
        yield host


async def test_a_price_event_drops_the_cached_price_at_once(
    caching_cart: ServiceHost[CartSettings], upstreams: Upstreams, bus: EventBus
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 5000)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{caching_cart.port}") as channel:
        carts = cart_service_pb2_grpc.CartServiceStub(channel)

        async def added_price() -> int:
            """The price a new guest cart gets for the SKU (from the cart's cache, if any)."""
            created = await carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
            added = await carts.AddLineItem(
                api.AddLineItemRequest(
                    cart_id=created.cart.id, cart_token=created.cart_token, sku=sku
                ),
                metadata=anonymous_web(),
            )
            return added.cart.line_items[0].unit_price.units

        assert await added_price() == 5000
        upstreams.catalog.products[sku].price = 3900
        # Within the TTL and before the event: the cached price (the staleness bound).
        assert await added_price() == 5000
        await publish(bus, catalog_events.PriceChanged(sku=sku))
        # The event reaches the cart (its consumer may first work through other tests'
        # events on the shared stream): from then on the new price, TTL or not.
        async with asyncio.timeout(60):
            while True:
                if await added_price() == 3900:
                    break
                await asyncio.sleep(0.1)
        assert await added_price() == 3900
