"""Inventory wiring: servicer, catalog projection, reservation expiry, live availability, seed."""

from __future__ import annotations

from pathlib import Path

from services.inventory.config import InventorySettings
from services.inventory.servicer import InventoryServicer
from services.inventory.subscribers import catalog_subscription
from services.inventory.usecases import Inventory
from services.inventory.watch import AvailabilityHub
from tenpo.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from tenpo.kit.server import Runtime, ServiceDefinition

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = inventory_service_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


async def build(runtime: Runtime[InventorySettings]) -> None:
    settings = runtime.settings
    inventory = Inventory(
        runtime.db,
        require_known_skus=settings.require_known_skus,
        batch_workers=settings.reserve_batch_workers,
        max_batch=settings.reserve_max_batch,
        batch_target=settings.reserve_batch_target,
        batch_linger=settings.reserve_batch_linger_seconds,
        customer_limits=settings.customer_limits(),
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
        await inventory.reservations.run_expiry(
            settings.expiry_interval_seconds, settings.expiry_batch_size
        )

    runtime.background.append(expire_reservations)
    # Every replica hears every StockChanged, so a watcher on any replica sees changes made
    # through any other.
    await runtime.bus.broadcast("tenpo.inventory.stock_changed", hub.on_event)

    async def end_streams() -> None:
        hub.close()  # open WatchAvailability streams end with OK while the server drains

    async def stop() -> None:
        await inventory.reservations.batcher.close()

    runtime.on_drain.append(end_streams)
    runtime.on_stop.append(stop)
    runtime.parts.update(inventory=inventory, availability_hub=hub)


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
