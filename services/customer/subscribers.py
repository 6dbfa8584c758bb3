"""Event consumers: the order service's events feed the order projection, points earned
from orders, returns and tiers, the computed segments and the timeline; the cart and
notification services' events feed the timeline."""

from __future__ import annotations

import uuid

from services.customer import order_events
from services.customer.usecases.earning import Earning
from services.customer.usecases.segments import Segments
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription
from tenpo.order.v1 import events_pb2 as order_pb


def _customer(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # a guest's order, or an id that is no customer of ours


def order_subscription(
    earning: Earning, durable: str = "customer-order", segments: Segments | None = None
) -> Subscription:
    async def resegment(uow: UnitOfWork, customer_ref: str) -> None:
        # In the same transaction as the projection the segments are computed from.
        customer_id = _customer(customer_ref)
        if segments is not None and customer_id is not None:
            await segments.recompute(uow, customer_id)

    async def placed(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.order_placed(event)
        if facts is not None:
            await earning.order_placed(uow, facts)
            await resegment(uow, str(facts.customer_id))

    async def cancelled(uow: UnitOfWork, event: Event) -> None:
        await earning.order_cancelled(uow, order_events.order_cancelled(event))
        await resegment(uow, event.parse(order_pb.OrderCancelled).customer_id)

    async def returned(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.return_received(event)
        if facts is not None:
            await earning.return_received(uow, facts)
            await resegment(uow, str(facts.customer_id))

    return Subscription(
        durable=durable,
        source_service="order",
        handlers={
            order_pb.OrderPlaced: placed,
            order_pb.OrderCancelled: cancelled,
            order_pb.ReturnReceived: returned,
        },
    )
