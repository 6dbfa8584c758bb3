"""Inventory wiring: servicer, catalog projection, reservation expiry, live availability, seed."""

from __future__ import annotations

from pathlib import Path

from services.inventory.config import InventorySettings
from services.inventory.servicer import InventoryServicer
from services.inventory.usecases import Inventory
from services.inventory.watch import AvailabilityHub
from tenpo.catalog.v1 import events_pb2 as catalog_events
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription
from tenpo.kit.server import Runtime, ServiceDefinition

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = inventory_service_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


def catalog_subscription(
    inventory: Inventory, durable: str = "inventory-known-skus"
) -> Subscription:
    """Known SKUs: a projection of the catalog's product events (drafts included, so stock
    can arrive before launch; archived SKUs stay known for returns and sell-through)."""

    async def product(uow: UnitOfWork, product_message: catalog_pb.Product) -> None:
        await inventory.record_product(
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
        await inventory.archive_skus(uow, list(event.parse(catalog_events.ProductArchived).skus))

    return Subscription(
        durable=durable,
        source_service="catalog",
        handlers={
            catalog_events.ProductPublished: published,
            catalog_events.ProductUpdated: updated,
            catalog_events.ProductArchived: archived,
        },
    )


async def build(runtime: Runtime[InventorySettings]) -> None:
    settings = runtime.settings
    inventory = Inventory(
        runtime.db,
        require_known_skus=settings.require_known_skus,
        batch_workers=settings.reserve_batch_workers,
        max_batch=settings.reserve_max_batch,
    )
    hub = AvailabilityHub(runtime.db)
    runtime.add_servicer(
        inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server,
        InventoryServicer(
            inventory, hub, runtime.page_tokens, watch_max_seconds=settings.watch_max_seconds
        ),
        SERVICE_NAME,
    )
    runtime.subscribe(catalog_subscription(inventory, settings.catalog_consumer))

    async def expire_reservations() -> None:
        await inventory.run_expiry(settings.expiry_interval_seconds, settings.expiry_batch_size)

    runtime.background.append(expire_reservations)
    # Every replica hears every StockChanged, so a watcher on any replica sees changes made
    # through any other.
    await runtime.bus.broadcast("tenpo.inventory.stock_changed", hub.on_event)

    async def stop() -> None:
        hub.close()
        await inventory.batcher.close()

    runtime.on_stop.append(stop)
    # In-process tests and benchmarks reach the parts through the host's runtime.
    setattr(runtime, "inventory", inventory)  # noqa: B010
    setattr(runtime, "availability_hub", hub)  # noqa: B010


async def seed(runtime: Runtime[InventorySettings]) -> None:
    from services.inventory.seed import seed_demo_network

    await seed_demo_network(runtime.db)


definition = ServiceDefinition(
    name="inventory",
    settings_type=InventorySettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
)
