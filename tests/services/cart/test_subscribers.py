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

from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tests.services.cart.conftest import Clients, Upstreams, customer, new_sku
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
