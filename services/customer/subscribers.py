"""Event consumers: the order service's events feed the order projection, points earned
from orders, returns and tiers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from services.customer import order_events
from services.customer.usecases.earning import Earning
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.events import Event, Handler, Subscription
from tenpo.order.v1 import events_pb2 as order_pb

log = logging.getLogger(__name__)


def _skipping_malformed(handle: Callable[[UnitOfWork, Event], Awaitable[None]]) -> Handler:
    """A malformed event can never succeed: redelivering it would only block the ones
    behind it. It is logged (ids only) and acknowledged."""

    async def handler(uow: UnitOfWork, event: Event) -> None:
        try:
            await handle(uow, event)
        except InvalidArgument as error:
            log.warning(
                "malformed order event skipped",
                extra={"event_id": str(event.id), "type": event.event_type, "why": str(error)},
            )

    return handler


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
            order_pb.OrderPlaced: _skipping_malformed(placed),
            order_pb.OrderCancelled: _skipping_malformed(cancelled),
            # By name: the order contract does not have the message yet.
            order_events.RETURN_RECEIVED: _skipping_malformed(returned),
        },
    )
