"""Event consumers: the order service's events feed the order projection, points earned
from orders, returns and tiers, the computed segments and the timeline; the cart and
notification services' events feed the timeline."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from google.protobuf.message import Message

from services.customer import order_events, projections
from services.customer.usecases.earning import Earning
from services.customer.usecases.segments import Segments
from services.customer.usecases.timeline import Timeline
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Handler, Subscription
from tenpo.order.v1 import events_pb2 as order_pb


def _customer(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # a guest's order, or an id that is no customer of ours


def order_subscription(
    earning: Earning,
    durable: str = "customer-order",
    segments: Segments | None = None,
    timeline: Timeline | None = None,
) -> Subscription:
    async def resegment(uow: UnitOfWork, customer_ref: str) -> None:
        # In the same transaction as the projection the segments are computed from.
        customer_id = _customer(customer_ref)
        if segments is not None and customer_id is not None:
            await segments.recompute(uow, customer_id)

    async def project(uow: UnitOfWork, event: Event) -> None:
        if timeline is not None:
            await timeline.project(uow, projections.read(event))

    async def placed(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.order_placed(event)
        if facts is not None:
            await earning.order_placed(uow, facts)
            await resegment(uow, str(facts.customer_id))
            await project(uow, event)

    async def cancelled(uow: UnitOfWork, event: Event) -> None:
        await earning.order_cancelled(uow, order_events.order_cancelled(event))
        await resegment(uow, event.parse(order_pb.OrderCancelled).customer_id)
        await project(uow, event)

    async def returned(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.return_received(event)
        if facts is not None:
            await earning.return_received(uow, facts)
            await resegment(uow, str(facts.customer_id))
            await project(uow, event)

    handlers: dict[type[Message] | str, Handler] = {
        order_pb.OrderPlaced: placed,
        order_pb.OrderCancelled: cancelled,
        order_pb.ReturnReceived: returned,
    }
    if timeline is not None:
        # The rest of the order's life only makes timeline entries.
        for message_type in projections.ORDER_EVENTS:
            handlers.setdefault(message_type, project)
    return Subscription(durable=durable, source_service="order", handlers=handlers)


def timeline_subscription(
    timeline: Timeline,
    durable: str,
    source_service: str,
    readers: Mapping[type[Message], Callable[[Event], projections.Projected]],
) -> Subscription:
    """Timeline entries from another service's events (cart, notification)."""

    async def project(uow: UnitOfWork, event: Event) -> None:
        await timeline.project(uow, projections.read(event))

    return Subscription(
        durable=durable,
        source_service=source_service,
        handlers=dict.fromkeys(readers, project),
    )


def cart_subscription(timeline: Timeline, durable: str = "customer-cart") -> Subscription:
    return timeline_subscription(timeline, durable, "cart", projections.CART_EVENTS)


def notification_subscription(
    timeline: Timeline, durable: str = "customer-notification"
) -> Subscription:
    return timeline_subscription(timeline, durable, "notification", projections.NOTIFICATION_EVENTS)
