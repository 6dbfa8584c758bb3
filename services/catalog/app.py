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
    catalog = Catalog(
        runtime.db,
        cache_ttl_seconds=runtime.settings.product_cache_ttl_seconds,
        reference_ttl_seconds=runtime.settings.reference_cache_ttl_seconds,
    )
    runtime.add_servicer(
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(catalog, runtime.page_tokens),
        SERVICE_NAME,
    )

    async def invalidate(subject: str, headers: Mapping[str, str], payload: bytes) -> None:
        # Another replica changed a product: drop our cached copy.
        product_id = _product_id_of(headers.get(EVENT_TYPE_HEADER, ""), payload)
        if product_id:
            catalog.caches.forget(uuid.UUID(product_id))

    await runtime.bus.broadcast("tenpo.catalog.*", invalidate)


async def seed(runtime: Runtime[CatalogSettings]) -> None:
    from services.catalog.seed import seed_demo_catalog

    await seed_demo_catalog(runtime.db)


async def import_command(settings: CatalogSettings, args: list[str]) -> int:
    """`python -m services.catalog import FILE [--target HOST:PORT] [--token TOKEN]`: exit code
    0 when every row was imported, 1 when some rows failed (each is listed), 2 when the file or
    the service could not be used at all."""
    import argparse
    import os

    import grpc

    from services.catalog.importer import ImportFileError, import_file, summary_text

    parser = argparse.ArgumentParser(prog="python -m services.catalog import")
    parser.add_argument("file", type=Path)
    parser.add_argument("--target", default=f"127.0.0.1:{settings.grpc_port}")
    parser.add_argument("--token", default=os.environ.get("TENPO_TOKEN", ""))
    parser.add_argument(
        "--batch-size", type=int, default=500, help="products per ImportProducts call"
    )
    parsed = parser.parse_args(args)
    token = parsed.token
    if not token:
        data_dir = Path(os.environ.get("TENPO_DATA_DIR", ".data"))
        token_file = data_dir / "dev-staff-token"
        if not token_file.exists():
            print("no token: pass --token or TENPO_TOKEN (make run writes .data/dev-staff-token)")
            return 2
        token = token_file.read_text().strip()
    try:
        report = await import_file(
            parsed.file, parsed.target, token, batch_size=max(1, parsed.batch_size)
        )
    except ImportFileError as error:
        print(f"cannot import {parsed.file}: {error}")
        return 2
    except OSError as error:
        print(f"cannot read {parsed.file}: {error.strerror}")
        return 2
    except grpc.aio.AioRpcError as error:
        print(f"the catalog refused the import: {error.code().name} {error.details()}")
        return 2
    print(summary_text(report))
    return 0 if report.failed == 0 else 1


definition = ServiceDefinition(
    name="catalog",
    settings_type=CatalogSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
    extra_cli={"import": import_command},
)
