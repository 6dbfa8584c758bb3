"""Event consumers: catalog price and product changes reprice carts; an erased customer's
carts and personal codes go."""

from __future__ import annotations

from services.cart.usecases.carts import Carts
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription


def catalog_subscription(carts: Carts, durable: str = "cart-catalog") -> Subscription:
    async def price_changed(uow: UnitOfWork, event: Event) -> None:
        await carts.catalog_changed(uow, [event.parse(catalog_events.PriceChanged).sku])

    async def product_changed(uow: UnitOfWork, event: Event) -> None:
        product = event.parse(catalog_events.ProductUpdated).product
        await carts.catalog_changed(uow, [v.sku for v in product.variants])

    async def archived(uow: UnitOfWork, event: Event) -> None:
        await carts.catalog_changed(uow, list(event.parse(catalog_events.ProductArchived).skus))

    return Subscription(
        durable=durable,
        source_service="catalog",
        handlers={
            catalog_events.PriceChanged: price_changed,
            catalog_events.ProductUpdated: product_changed,
            catalog_events.ProductArchived: archived,
        },
    )


def customer_subscription(carts: Carts, durable: str = "cart-customer") -> Subscription:
    async def erased(uow: UnitOfWork, event: Event) -> None:
        await carts.customer_erased(uow, event.parse(customer_events.CustomerErased).customer_id)

    return Subscription(
        durable=durable,
        source_service="customer",
        handlers={customer_events.CustomerErased: erased},
    )
