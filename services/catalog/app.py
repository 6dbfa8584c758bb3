"""Catalog wiring: servicer, event-driven cache invalidation, seed and import commands."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from services.catalog.config import CatalogSettings
from services.catalog.servicer import CatalogServicer
from services.catalog.usecases import Catalog
from tenpo.catalog.v1 import catalog_service_pb2, catalog_service_pb2_grpc, events_pb2
from tenpo.kit.events import EVENT_TYPE_HEADER
from tenpo.kit.server import Runtime, ServiceDefinition

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def _product_id_of(event_type: str, payload: bytes) -> str | None:
    if event_type == events_pb2.ProductUpdated.DESCRIPTOR.full_name:
        return events_pb2.ProductUpdated.FromString(payload).product.id
    if event_type == events_pb2.ProductArchived.DESCRIPTOR.full_name:
        return events_pb2.ProductArchived.FromString(payload).product_id
    return None


async def build(runtime: Runtime[CatalogSettings]) -> None:
    catalog = Catalog(runtime.db, cache_ttl_seconds=runtime.settings.product_cache_ttl_seconds)
    runtime.add_servicer(
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(catalog, runtime.page_tokens),
        SERVICE_NAME,
    )

    async def invalidate(subject: str, headers: Mapping[str, str], payload: bytes) -> None:
        # Another replica changed a product: drop our cached copy.
        product_id = _product_id_of(headers.get(EVENT_TYPE_HEADER, ""), payload)
        if product_id:
            catalog.cache.invalidate(uuid.UUID(product_id))

    await runtime.bus.broadcast("tenpo.catalog.*", invalidate)


async def seed(runtime: Runtime[CatalogSettings]) -> None:
    from services.catalog.seed import seed_demo_catalog

    await seed_demo_catalog(runtime.db)


definition = ServiceDefinition(
    name="catalog",
    settings_type=CatalogSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
)
