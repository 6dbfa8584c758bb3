"""Catalog test fixtures: a migrated, running catalog per test, and a seeded one per module."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from services.catalog.app import definition
from services.catalog.config import CatalogSettings
from services.catalog.seed import seed_demo_catalog
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit import migrations
from tenpo.kit.db import Database
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import auth_settings


async def _start(
    database_url: str, nats_url: str, dev_keys: DevKeys, seed: bool
) -> AsyncIterator[ServiceHost[CatalogSettings]]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    if seed:
        db = Database(database_url)
        await seed_demo_catalog(db)
        await db.dispose()
    settings = CatalogSettings(
        database_url=database_url,
        nats_url=nats_url,
        grpc_port=0,
        **auth_settings(dev_keys),  # type: ignore[arg-type]
    )
    async with running(definition, settings) as host:
        yield host


@pytest_asyncio.fixture
async def catalog_host(
    database_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[ServiceHost[CatalogSettings]]:
    async for host in _start(database_url, nats_url, dev_keys, seed=False):
        yield host


@pytest_asyncio.fixture
async def catalog(
    catalog_host: ServiceHost[CatalogSettings],
) -> AsyncIterator[catalog_service_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_host.port}") as channel:
        yield catalog_service_pb2_grpc.CatalogServiceStub(channel)


@pytest_asyncio.fixture(scope="module")
async def seeded_catalog(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[catalog_service_pb2_grpc.CatalogServiceStub]:
    """The demo catalog, seeded once per module; tests using it only read."""
    name = f"test_seed_{uuid.uuid4().hex[:12]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        async for host in _start(url, nats_url, dev_keys, seed=True):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
                yield catalog_service_pb2_grpc.CatalogServiceStub(channel)
    finally:
        drop_database(postgres_admin_url, name)
