"""Event consumers: the order service's events feed the order projection, points earned
from orders, returns and tiers."""

from __future__ import annotations

from services.customer import order_events
from services.customer.usecases.earning import Earning
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription
from tenpo.order.v1 import events_pb2 as order_pb


def order_subscription(earning: Earning, durable: str = "customer-order") -> Subscription:
    async def placed(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.order_placed(event)
        if facts is not None:
            await earning.order_placed(uow, facts)

    async def cancelled(uow: UnitOfWork, event: Event) -> None:
        await earning.order_cancelled(uow, order_events.order_cancelled(event))

    async def returned(uow: UnitOfWork, event: Event) -> None:
        facts = order_events.return_received(event)
        if facts is not None:
            await earning.return_received(uow, facts)

    return Subscription(
        durable=durable,
        source_service="order",
        handlers={
            order_pb.OrderPlaced: placed,
            order_pb.OrderCancelled: cancelled,
            order_pb.ReturnReceived: returned,
        },
    )
