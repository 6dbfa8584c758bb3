"""The timeline from every service, through real NATS and PostgreSQL: order, cart and
notification events become entries of the customer's timeline (and of her 360 view), once
per event, never for guests or erased customers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest_asyncio
from google.protobuf.message import Message
from google.type import money_pb2

from services.customer import projections
from tenpo.cart.v1 import events_pb2 as cart_events
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2 as ipb
from tenpo.customer.v1 import interaction_service_pb2_grpc as ipb_grpc
from tenpo.kit.db import event_subject
from tenpo.kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    OCCURRED_AT_HEADER,
    Event,
    EventBus,
)
from tenpo.notification.v1 import events_pb2 as notification_events
from tenpo.notification.v1 import resources_pb2 as notification_pb
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.customer.conftest import Service, bearer


@dataclass
class World:
    service: Service
    bus: EventBus
    interactions: ipb_grpc.InteractionServiceStub

    def staff(self, *scopes: str) -> tuple[tuple[str, str], ...]:
        return bearer(
            self.service.tokens.mint(
                subject="staff-cs", kind="staff", scopes=list(scopes), channel="BACK_OFFICE"
            )
        )

    async def publish(self, message: Message, event_id: str | None = None) -> None:
        """As the producing service's outbox relay would."""
        event_id = event_id or str(uuid.uuid4())
        await self.bus.publish(
            event_subject(message),
            message.SerializeToString(),
            {
                EVENT_ID_HEADER: event_id,
                EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
                OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
            },
            msg_id=event_id,
        )

    async def timeline(self, customer_id: str) -> list[ipb.Interaction]:
        response = await self.interactions.ListInteractions(
            ipb.ListInteractionsRequest(customer_id=customer_id, page_size=200),
            metadata=self.staff("customers:read"),
        )
        return list(response.interactions)

    async def until(self, customer_id: str, count: int) -> list[ipb.Interaction]:
        async with asyncio.timeout(30):
            while True:
                seen = await self.timeline(customer_id)
                if len(seen) >= count:
                    return seen
                await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module")
async def world(service_factory: Callable[..., Any], nats_url: str) -> AsyncIterator[World]:
    suffix = uuid.uuid4().hex[:8]
    service: Service = await service_factory(
        order_consumer=f"customer-order-{suffix}",
        cart_consumer=f"customer-cart-{suffix}",
        notification_consumer=f"customer-notification-{suffix}",
    )
    bus = EventBus(nats_url, name="test-customer-timeline")
    await bus.connect()
    for producer in ("order", "cart", "notification"):
        await bus.ensure_stream(producer)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
            yield World(service, bus, ipb_grpc.InteractionServiceStub(channel))
    finally:
        await bus.close()


def _ref(customer_id: str, order_id: str) -> order_events.FulfillmentRef:
    return order_events.FulfillmentRef(
        order_id=order_id,
        order_number="N000042",
        customer_id=customer_id,
        channel=common_pb2.CHANNEL_WEB,
        fulfillment_id="f1",
        fulfillment_number="N000042-1",
        store_id="tokyo-shibuya",
    )


async def test_orders_carts_and_messages_reach_the_timeline_once_each(world: World) -> None:
    customer_id, _, _ = await world.service.register("timeline")
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    await world.publish(
        order_events.OrderPlaced(
            order_id=order_id,
            order_number="N000042",
            customer_id=customer_id,
            channel=common_pb2.CHANNEL_WEB,
            total=money_pb2.Money(currency_code="JPY", units=4_200),
            lines=[order_events.OrderEventLine(sku="SKU-1", quantity=1)],
        )
    )
    await world.publish(order_events.ReadyForPickup(fulfillment=_ref(customer_id, order_id)))
    picked = str(uuid.uuid4())
    await world.publish(order_events.PickedUp(fulfillment=_ref(customer_id, order_id)), picked)
    cart_id = f"cart-{uuid.uuid4().hex[:8]}"
    await world.publish(
        cart_events.CartAbandoned(
            cart_id=cart_id,
            customer_id=customer_id,
            channel=common_pb2.CHANNEL_APP,
            lines=[cart_events.CartLine(sku="SKU-2", quantity=2)],
        )
    )
    await world.publish(cart_events.CartAbandoned(cart_id="guest-cart", customer_id=""))
    message_id = str(uuid.uuid4())
    await world.publish(
        notification_events.MessageSent(
            message_id=message_id,
            customer_id=customer_id,
            template_key="order_confirmation",
            channel=notification_pb.MESSAGE_CHANNEL_EMAIL,
        )
    )
    await world.publish(
        notification_events.MessageOpened(
            message_id=message_id, customer_id=customer_id, template_key="order_confirmation"
        )
    )
    await world.publish(
        notification_events.MessageClicked(
            message_id=message_id,
            customer_id=customer_id,
            template_key="order_confirmation",
            link_index=1,
        )
    )
    seen = await world.until(customer_id, 7)
    found = sorted((int(i.kind), i.summary, i.reference) for i in seen)
    assert found == sorted(
        [
            (ipb.INTERACTION_KIND_ORDER, "PLACED N000042", order_id),
            (ipb.INTERACTION_KIND_ORDER, "READY_FOR_PICKUP N000042-1", order_id),
            (ipb.INTERACTION_KIND_ORDER, "PICKED_UP N000042-1", order_id),
            (ipb.INTERACTION_KIND_CART, "ABANDONED 2 item(s)", cart_id),
            (ipb.INTERACTION_KIND_MESSAGE, "SENT order_confirmation EMAIL", message_id),
            (ipb.INTERACTION_KIND_MESSAGE, "OPENED order_confirmation", message_id),
            (ipb.INTERACTION_KIND_MESSAGE, "CLICKED order_confirmation link 1", message_id),
        ]
    )
    placed = next(i for i in seen if i.summary.startswith("PLACED"))
    assert placed.channel == common_pb2.CHANNEL_WEB
    picked_up = next(i for i in seen if i.summary.startswith("PICKED_UP"))
    assert picked_up.store_id == "tokyo-shibuya"
    # The same event handled again (a redelivery the consumer's record missed) adds nothing:
    # the entry's id comes from the event id.
    cases = world.service.host.runtime.parts["use_cases"]
    again = projections.read(
        Event(
            id=uuid.UUID(picked),
            event_type=order_events.PickedUp.DESCRIPTOR.full_name,
            subject="",
            payload=order_events.PickedUp(
                fulfillment=_ref(customer_id, order_id)
            ).SerializeToString(),
            occurred_at=datetime.now(UTC),
        )
    )
    async with world.service.host.runtime.db.unit_of_work() as uow:
        assert await cases.timeline.project(uow, again) is False
        await uow.commit()
    assert len([i for i in await world.timeline(customer_id) if "PICKED_UP" in i.summary]) == 1

    overview = await world.service.customers.GetCustomer360(
        api.GetCustomer360Request(customer_id=customer_id, recent_limit=100),
        metadata=world.staff("customers:overview"),
    )
    kinds = {int(i.kind) for i in overview.recent_interactions}
    assert {
        ipb.INTERACTION_KIND_ORDER,
        ipb.INTERACTION_KIND_CART,
        ipb.INTERACTION_KIND_MESSAGE,
    } <= kinds


async def test_an_erased_customer_gets_no_new_entries(world: World) -> None:
    customer_id, _, auth = await world.service.register("gone")
    await world.publish(
        notification_events.MessageSent(
            message_id=str(uuid.uuid4()), customer_id=customer_id, template_key="welcome"
        )
    )
    await world.until(customer_id, 1)
    await world.service.customers.EraseCustomer(
        api.EraseCustomerRequest(customer_id=customer_id), metadata=auth
    )
    assert await world.timeline(customer_id) == []
    await world.publish(
        notification_events.MessageSent(
            message_id=str(uuid.uuid4()), customer_id=customer_id, template_key="late"
        )
    )
    # A later event of another customer shows the consumer got past hers.
    other, _, _ = await world.service.register("other")
    await world.publish(
        notification_events.MessageSent(
            message_id=str(uuid.uuid4()), customer_id=other, template_key="welcome"
        )
    )
    await world.until(other, 1)
    assert await world.timeline(customer_id) == []
