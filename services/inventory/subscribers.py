"""Event consumers: the catalog's product events feed the known-SKU projection."""

from __future__ import annotations

from services.inventory.usecases import Inventory
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription


def catalog_subscription(
    inventory: Inventory, durable: str = "inventory-known-skus"
) -> Subscription:
    """Known SKUs: a projection of the catalog's product events (drafts included, so stock
    can arrive before launch; archived SKUs stay known for returns and sell-through)."""

    async def product(uow: UnitOfWork, product_message: catalog_pb.Product) -> None:
        await inventory.catalog.record_product(
            uow,
            product_message.id,
            [v.sku for v in product_message.variants],
            archived=product_message.status == catalog_pb.PRODUCT_STATUS_ARCHIVED,
        )

    async def published(uow: UnitOfWork, event: Event) -> None:
        await product(uow, event.parse(catalog_events.ProductPublished).product)

    async def updated(uow: UnitOfWork, event: Event) -> None:
        await product(uow, event.parse(catalog_events.ProductUpdated).product)

    async def archived(uow: UnitOfWork, event: Event) -> None:
        await inventory.catalog.archive_skus(
            uow, list(event.parse(catalog_events.ProductArchived).skus)
        )

    return Subscription(
        durable=durable,
        source_service="catalog",
        handlers={
            catalog_events.ProductPublished: published,
            catalog_events.ProductUpdated: updated,
            catalog_events.ProductArchived: archived,
        },
    )
