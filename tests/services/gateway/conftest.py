"""Gateway test fixtures: a seeded catalog (real service), a fake inventory (in-process gRPC
servicer: the real one is being built in parallel), and gateways started on demand."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from services.cart.app import definition as cart_definition
from services.cart.config import CartSettings
from services.catalog.app import definition as catalog_definition
from services.catalog.config import CatalogSettings
from services.catalog.seed import seed_demo_catalog
from services.gateway.app import Gateway, GatewayService
from services.gateway.config import DEV_PUBLISHABLE_KEYS, GatewaySettings
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit import migrations
from tenpo.kit.db import Database
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import auth_settings, gateway_channel

inventory_api = pytest.importorskip("tenpo.inventory.v1.inventory_service_pb2")
inventory_grpc = pytest.importorskip("tenpo.inventory.v1.inventory_service_pb2_grpc")
inventory_app = pytest.importorskip("services.inventory.app")
inventory_config = pytest.importorskip("services.inventory.config")
inventory_seed = pytest.importorskip("services.inventory.seed")
inventory_store = pytest.importorskip("services.inventory.store")

WEB_KEY = next(k for k, v in DEV_PUBLISHABLE_KEYS.items() if v == "WEB")
APP_KEY = next(k for k, v in DEV_PUBLISHABLE_KEYS.items() if v == "APP")


@dataclass
class SeededCatalog:
    target: str
    stub: catalog_service_pb2_grpc.CatalogServiceStub
    product_ids: list[str]


@pytest_asyncio.fixture(scope="module")
async def seeded_catalog(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[SeededCatalog]:
    """The real catalog service with the demo catalog, once per module (tests only read)."""
    name = f"test_gw_{uuid.uuid4().hex[:12]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        await migrations.upgrade(catalog_definition.migrations, url)  # type: ignore[arg-type]
        db = Database(url)
        await seed_demo_catalog(db)
        await db.dispose()
        settings = CatalogSettings(
            database_url=url,
            nats_url=nats_url,
            grpc_port=0,
            log_level="WARNING",
            **auth_settings(dev_keys),  # type: ignore[arg-type]
        )
        async with (
            running(catalog_definition, settings) as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
            listed = await stub.ListProducts(
                catalog_api.ListProductsRequest(page_size=50),
                metadata=gateway_channel("WEB"),
            )
            yield SeededCatalog(f"127.0.0.1:{host.port}", stub, [p.id for p in listed.products])
    finally:
        drop_database(postgres_admin_url, name)


@dataclass
class FakeInventory(inventory_grpc.InventoryServiceServicer):  # type: ignore[misc,name-defined]
    """Answers FindNearbyAvailability and WatchAvailability from memory; records metadata."""

    stock: dict[str, int] = field(default_factory=dict)
    updates: asyncio.Queue[tuple[str, int]] = field(default_factory=asyncio.Queue)
    seen_metadata: list[dict[str, str]] = field(default_factory=list)

    def _record(self, context: grpc.aio.ServicerContext) -> None:
        self.seen_metadata.append(
            {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        )

    async def FindNearbyAvailability(self, request: Any, context: Any) -> Any:
        self._record(context)
        sku = request.lines[0].sku if request.lines else ""
        available = self.stock.get(sku, 0)
        if available <= 0:
            return inventory_api.FindNearbyAvailabilityResponse()
        return inventory_api.FindNearbyAvailabilityResponse(
            locations=[
                {
                    "location": {"id": "store-shibuya", "display_name": "Shibuya"},
                    "distance_km": 1.2,
                    "available": [{"sku": sku, "quantity": available}],
                },
                {
                    "location": {"id": "store-ginza", "display_name": "Ginza"},
                    "distance_km": 4.5,
                    "available": [{"sku": sku, "quantity": 1}],
                },
            ]
        )

    async def WatchAvailability(self, request: Any, context: Any) -> Any:
        self._record(context)
        if not request.skus:
            from tenpo.kit.errors import InvalidArgument

            raise InvalidArgument("skus is required", reason="SKUS_REQUIRED")
        for sku in request.skus:
            yield inventory_api.WatchAvailabilityResponse(
                kind=1, sku=sku, available_to_promise=self.stock.get(sku, 0)
            )
        while True:
            sku, value = await self.updates.get()
            self.stock[sku] = value
            if sku in request.skus:
                yield inventory_api.WatchAvailabilityResponse(
                    kind=2, sku=sku, available_to_promise=value
                )


@dataclass
class InventoryHandle:
    fake: FakeInventory
    port: int
    server: grpc.aio.Server | None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


async def guarded_inventory(dev_keys: object, fake: FakeInventory, **guard: Any) -> InventoryHandle:
    """``fake`` served behind the kit's call guard (``guard``: its options), on a free port."""
    from tenpo.kit.auth import TokenVerifier
    from tenpo.kit.guard import CallGuard, GuardedServer
    from tenpo.kit.settings import ServiceSettings

    verifier = TokenVerifier.from_settings(ServiceSettings(**auth_settings(dev_keys)))  # type: ignore[arg-type]
    server = grpc.aio.server()
    inventory_grpc.add_InventoryServiceServicer_to_server(
        fake,
        GuardedServer(server, CallGuard(verifier, **guard)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return InventoryHandle(fake, port, server)


@pytest_asyncio.fixture
async def fake_inventory(dev_keys: DevKeys) -> AsyncIterator[InventoryHandle]:
    """The fake behind the kit's call guard, so tokens are verified as a real service would."""
    handle = await guarded_inventory(dev_keys, FakeInventory())
    try:
        yield handle
    finally:
        await handle.stop()


@dataclass
class RunningGateway:
    gateway: Gateway
    host: ServiceHost[GatewaySettings]
    client: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.host.port}"


@pytest_asyncio.fixture(scope="module")
async def inventory_target(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[str]:
    name = f"test_gw_inv_{uuid.uuid4().hex[:10]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        definition = inventory_app.definition
        await migrations.upgrade(definition.migrations, url)
        db = Database(url, pool_size=1, max_overflow=0)
        async with db.unit_of_work() as uow:
            for location in inventory_seed.LOCATIONS:
                await inventory_store.LocationStore(uow.session).insert(location)
            await uow.commit()
        await db.dispose()
        settings = inventory_config.InventorySettings(
            database_url=url,
            nats_url=nats_url,
            grpc_port=0,
            require_known_skus=False,
            catalog_consumer=f"gateway-test-{uuid.uuid4().hex[:8]}",
            shutdown_grace_seconds=1.0,
            log_level="WARNING",
            **auth_settings(dev_keys),
        )
        async with running(definition, settings) as host:
            yield f"127.0.0.1:{host.port}"
    finally:
        drop_database(postgres_admin_url, name)


@pytest_asyncio.fixture(scope="module")
async def cart_target(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys, seeded_catalog: SeededCatalog
) -> AsyncIterator[str]:
    name = f"test_gw_cart_{uuid.uuid4().hex[:10]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    try:
        await migrations.upgrade(cart_definition.migrations, url)  # type: ignore[arg-type]
        settings = CartSettings(
            database_url=url,
            nats_url=nats_url,
            grpc_port=0,
            catalog_target=seeded_catalog.target,
            # No inventory here: availability says UNKNOWN and the cart works on.
            inventory_target="127.0.0.1:1",
            catalog_consumer=f"cart-gw-{uuid.uuid4().hex[:8]}",
            customer_consumer=f"cart-gw-c-{uuid.uuid4().hex[:8]}",
            shutdown_grace_seconds=1.0,
            log_level="WARNING",
            **auth_settings(dev_keys),  # type: ignore[arg-type]
        )
        async with running(cart_definition, settings) as host:
            yield f"127.0.0.1:{host.port}"
    finally:
        drop_database(postgres_admin_url, name)


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]


@pytest.fixture
def start_gateway(dev_keys: DevKeys) -> GatewayFactory:
    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningGateway]:
        values: dict[str, Any] = {
            "grpc_port": 0,
            "http_port": 0,
            "log_level": "WARNING",
            "shutdown_grace_seconds": 1.0,
            **auth_settings(dev_keys),
            **overrides,
        }
        settings = GatewaySettings(**values)
        service = GatewayService()
        async with running(service.definition, settings) as host:
            assert service.gateway is not None
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{service.gateway.http_port}", timeout=10
            ) as client:
                yield RunningGateway(service.gateway, host, client)

    return start
