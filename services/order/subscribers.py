"""Event consumers: an erased customer's orders are pseudonymized (the rule is in
``usecases/search.py``)."""

from __future__ import annotations

from services.order.usecases.search import OrderSearch
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription


def customer_subscription(durable: str = "order-customer") -> Subscription:
    async def erased(uow: UnitOfWork, event: Event) -> None:
        customer_id = event.parse(customer_events.CustomerErased).customer_id
        await OrderSearch.customer_erased(uow, customer_id)

    return Subscription(
        durable=durable,
        source_service="customer",
        handlers={customer_events.CustomerErased: erased},
    )
