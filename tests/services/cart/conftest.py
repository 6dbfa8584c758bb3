"""Cart test fixtures: a migrated, running cart service per test, in front of small fake
catalog and inventory gRPC servers (real gRPC, so the clients' deadlines, channel headers
and error handling are what runs), and tokens for every kind of caller."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.type import money_pb2

from services.cart.app import definition
from services.cart.config import CartSettings
from tenpo.cart.v1 import cart_service_pb2_grpc, promotion_service_pb2_grpc
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.common.v1 import common_pb2
from tenpo.devtools.keys import DevKeys
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit import migrations
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import Tokens, auth_settings, gateway_channel

CartStub = cart_service_pb2_grpc.CartServiceStub
PromotionStub = promotion_service_pb2_grpc.PromotionServiceStub
Metadata = tuple[tuple[str, str], ...]


@dataclass
class Product:
    sku: str
    price: int
    title: str = "スニーカー"
    channels: frozenset[int] = frozenset({common_pb2.CHANNEL_WEB, common_pb2.CHANNEL_APP})
    tax_rate: int = 10
    category_ids: tuple[str, ...] = ()
    product_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class FakeCatalog(catalog_grpc.CatalogServiceServicer):
    """Answers as the catalog does for an anonymous caller of the x-tenpo-channel channel."""

    products: dict[str, Product] = field(default_factory=dict)
    calls: int = 0
    #: While set and not open, calls wait for it (to hold calls in flight).
    gate: asyncio.Event | None = None

    def add(self, sku: str, price: int, **kwargs: Any) -> Product:
        self.products[sku] = Product(sku, price, **kwargs)
        return self.products[sku]

    @staticmethod
    def _channel(context: Any) -> int:
        for key, value in context.invocation_metadata() or ():
            if key == "x-tenpo-channel":
                return common_pb2.Channel.Value("CHANNEL_" + value)
        return common_pb2.CHANNEL_WEB

    def _visible(self, skus: Any, context: Any) -> list[Product]:
        channel = self._channel(context)
        return [
            self.products[s]
            for s in skus
            if s in self.products and channel in self.products[s].channels
        ]

    async def BatchGetVariants(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return catalog_api.BatchGetVariantsResponse(
            variants=[
                catalog_pb.Variant(sku=p.sku, product_id=p.product_id)
                for p in self._visible(request.skus, context)
            ]
        )

    async def BatchGetProducts(self, request: Any, context: Any) -> Any:
        channel = self._channel(context)
        found = {p.product_id: p for p in self.products.values() if channel in p.channels}
        return catalog_api.BatchGetProductsResponse(
            products=[
                catalog_pb.Product(
                    id=pid,
                    title=found[pid].title,
                    category_ids=list(found[pid].category_ids),
                    media=[catalog_pb.Media(url=f"https://img.example/{found[pid].sku}.jpg")],
                )
                for pid in request.ids
                if pid in found
            ]
        )

    async def GetPrices(self, request: Any, context: Any) -> Any:
        return catalog_api.GetPricesResponse(
            prices=[
                catalog_pb.ResolvedPrice(
                    sku=p.sku,
                    amount=money_pb2.Money(currency_code="JPY", units=p.price),
                    tax_rate_percent=float(p.tax_rate),
                )
                for p in self._visible(request.skus, context)
            ]
        )


@dataclass
class FakeInventory(inventory_grpc.InventoryServiceServicer):
    stock: dict[str, int] = field(default_factory=dict)
    down: bool = False
    calls: int = 0
    gate: asyncio.Event | None = None

    async def GetAvailability(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "inventory is down")
        return inventory_api.GetAvailabilityResponse(
            availabilities=[
                inventory_pb.SkuAvailability(
                    sku=s, network_available_to_promise=self.stock.get(s, 0)
                )
                for s in request.skus
            ]
        )


@dataclass
class Upstreams:
    catalog: FakeCatalog
    inventory: FakeInventory
    catalog_target: str
    inventory_target: str


@pytest_asyncio.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    catalog, inventory = FakeCatalog(), FakeInventory()
    server = grpc.aio.server()
    catalog_grpc.add_CatalogServiceServicer_to_server(catalog, server)
    inventory_grpc.add_InventoryServiceServicer_to_server(inventory, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Upstreams(catalog, inventory, f"127.0.0.1:{port}", f"127.0.0.1:{port}")
    finally:
        await server.stop(None)


async def start_cart(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams, **overrides: Any
) -> AsyncIterator[ServiceHost[CartSettings]]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "grpc_port": 0,
        "database_pool_size": 20,
        "catalog_target": upstreams.catalog_target,
        "inventory_target": upstreams.inventory_target,
        "catalog_consumer": f"cart-catalog-{suffix}",
        "customer_consumer": f"cart-customer-{suffix}",
        # No caches unless a test is about them: most tests change a price or the stock
        # and look at once.
        "catalog_cache_seconds": 0,
        "availability_cache_seconds": 0,
        "sweep_interval_seconds": 3600,
        "shutdown_grace_seconds": 1.0,
        **auth_settings(dev_keys),
    }
    settings = CartSettings(**(values | overrides))
    async with running(definition, settings) as host:
        yield host


@pytest_asyncio.fixture
async def cart_host(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams
) -> AsyncIterator[ServiceHost[CartSettings]]:
    async for host in start_cart(database_url, nats_url, dev_keys, upstreams):
        yield host


@dataclass
class Clients:
    carts: CartStub
    promotions: PromotionStub
    host: ServiceHost[CartSettings]


@pytest_asyncio.fixture
async def cart(cart_host: ServiceHost[CartSettings]) -> AsyncIterator[Clients]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cart_host.port}") as channel:
        yield Clients(CartStub(channel), PromotionStub(channel), cart_host)


def customer(tokens: Tokens, subject: str, channel: str = "APP", **claims: Any) -> Metadata:
    store = claims.pop("store_id", None)
    return tokens.metadata(
        tokens.mint(subject=subject, kind="customer", channel=channel, store_id=store, **claims)
    )


def staff(tokens: Tokens, *scopes: str) -> Metadata:
    return tokens.metadata(
        tokens.mint(
            subject="staff-promo-1", kind="staff", scopes=list(scopes), channel="BACK_OFFICE"
        )
    )


def service(tokens: Tokens, *scopes: str) -> Metadata:
    return tokens.metadata(tokens.mint(subject="order", kind="service", scopes=list(scopes)))


def anonymous_web() -> Metadata:
    """A guest on the web shop, as the gateway vouches for it (a fresh proof: proofs age)."""
    return gateway_channel("WEB")


def new_sku(prefix: str = "SKU") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    if reason is not None:
        assert decode_error(caught.value).reason == reason
    return decode_error(caught.value)
