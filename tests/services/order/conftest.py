"""Order test fixtures: the real inventory and cart services in process (each on its own
database), the cart in front of the cart tests' fake catalog, and the order service calling
them with a service token — so reservations, redemptions and checkouts are the real ones."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa

from services.customer.app import definition as customer_definition
from services.customer.config import CustomerSettings
from services.order.app import build, definition
from services.order.config import OrderSettings
from services.order.usecases.checkout import Checkout
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.customer.v1 import loyalty_service_pb2_grpc
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit import migrations
from tenpo.kit.db import Database
from tenpo.kit.server import ServiceHost, running
from tenpo.kit.service_token import StaticToken
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import order_service_pb2_grpc
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.cart.conftest import FakeCatalog, start_cart
from tests.services.cart.conftest import Upstreams as CartUpstreams
from tests.services.conftest import Tokens, auth_settings
from tests.services.customer.conftest import customer_settings
from tests.services.inventory.conftest import start_inventory

Metadata = tuple[tuple[str, str], ...]
STORE = "tokyo-shibuya"
#: What the order service's client is given (see the service README).
SERVICE_SCOPES = [
    "inventory:write",
    "carts:read",
    "carts:checkout",
    "promotions:redeem",
    "loyalty:write",
]
OK_CARD = "4242424242424242"


@dataclass
class Stack:
    tokens: Tokens
    catalog: FakeCatalog
    inventory: inventory_service_pb2_grpc.InventoryServiceStub
    carts: cart_service_pb2_grpc.CartServiceStub
    orders: order_service_pb2_grpc.OrderServiceStub
    order_host: ServiceHost[OrderSettings]
    order_db: Database
    loyalty: loyalty_service_pb2_grpc.LoyaltyServiceStub
    customer_host: ServiceHost[CustomerSettings]
    #: Where the order service's dependencies listen (cart, inventory, customer).
    targets: dict[str, str]
    order_database_url: str

    @property
    def checkout(self) -> Checkout:
        assert self.order_host.runtime is not None
        checkout: Checkout = self.order_host.runtime.parts["checkout"]
        return checkout

    def customer(self, subject: str) -> Metadata:
        return self.tokens.metadata(
            self.tokens.mint(subject=subject, kind="customer", channel="APP")
        )

    @property
    def staff(self) -> Metadata:
        return self.tokens.metadata(
            self.tokens.mint(
                subject="staff-1",
                kind="staff",
                scopes=["inventory:write", "orders:read", "orders:write"],
                channel="BACK_OFFICE",
            )
        )

    async def stock(self, quantity: int, price: int = 1200) -> str:
        """A new SKU the catalog offers, with ``quantity`` units at the store."""
        sku = f"O-{uuid.uuid4().hex[:10]}"
        self.catalog.add(sku, price)
        if quantity:
            await self.inventory.AdjustStock(
                inventory_api.AdjustStockRequest(
                    sku=sku,
                    location_id=STORE,
                    quantity=quantity,
                    reason=inventory_pb.MOVEMENT_REASON_RECEIPT,
                ),
                metadata=self.staff,
            )
        return sku

    async def atp(self, sku: str) -> int:
        found = await self.inventory.GetAvailability(
            inventory_api.GetAvailabilityRequest(skus=[sku], location_ids=[STORE])
        )
        levels = found.availabilities[0].locations
        return levels[0].available_to_promise if levels else 0

    async def level(self, sku: str) -> inventory_pb.StockLevel:
        """The SKU's stock level at the store (on hand, reserved)."""
        listed = await self.inventory.ListStockLevels(
            inventory_api.ListStockLevelsRequest(location_id=STORE, page_size=1000),
            metadata=self.staff,
        )
        return next(level for level in listed.stock_levels if level.sku == sku)

    async def cart(self, customer: str, *lines: tuple[str, int]) -> cart_pb.Cart:
        """The customer's active cart with ``lines``, for pickup at the store."""
        md = self.customer(customer)
        cart = (await self.carts.GetActiveCart(cart_api.GetActiveCartRequest(), metadata=md)).cart
        for sku, quantity in lines:
            cart = (
                await self.carts.AddLineItem(
                    cart_api.AddLineItemRequest(cart_id=cart.id, sku=sku, quantity=quantity),
                    metadata=md,
                )
            ).cart
        update = cart_api.UpdateCartRequest(
            cart=cart_pb.Cart(
                id=cart.id,
                etag=cart.etag,
                fulfillment=cart_pb.Fulfillment(
                    method=cart_pb.FULFILLMENT_METHOD_PICKUP, store_id=STORE
                ),
            )
        )
        update.update_mask.paths.append("fulfillment")
        return (await self.carts.UpdateCart(update, metadata=md)).cart

    def place_request(
        self, cart: cart_pb.Cart, card: str = OK_CARD, request_id: str | None = None
    ) -> api.PlaceOrderRequest:
        return api.PlaceOrderRequest(
            cart_id=cart.id,
            cart_etag=cart.etag,
            payment=pb.Payment(method=pb.PAYMENT_METHOD_CARD, card_token=card),
            request_id=request_id or uuid.uuid4().hex,
        )

    def return_at_store(
        self, order_id: str, store_id: str, sku: str, quantity: int = 1
    ) -> Awaitable[api.ReturnOrderLinesResponse]:
        """Staff take ``quantity`` units of ``sku`` back over ``store_id``'s counter (a new
        request_id)."""
        return self.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(
                order_id=order_id,
                store_id=store_id,
                lines=[pb.FulfillmentLine(sku=sku, quantity=quantity)],
                request_id=uuid.uuid4().hex,
            ),
            metadata=self.staff,
        )

    async def outbox_events(self, event_type: str) -> list[bytes]:
        async with self.order_db.unit_of_work() as uow:
            rows = await uow.session.execute(
                sa.text("SELECT payload FROM outbox WHERE event_type LIKE :t"),
                {"t": f"%{event_type}"},
            )
            return [row.payload for row in rows]

    async def sandbox_state(self, order_id: str) -> str:
        assert self.order_host.runtime is not None
        state: str = await self.order_host.runtime.parts["sandbox"].state(f"{order_id}:authorize")
        return state


async def _database(admin_url: str, label: str) -> tuple[str, str]:
    name = f"test_{label}_{uuid.uuid4().hex[:10]}"
    return name, ensure_database(admin_url, name, secrets.token_urlsafe(18))


@pytest.fixture(scope="module")
def order_overrides() -> dict[str, Any]:
    """Order settings of a module's stack (a module overrides this fixture to change them)."""
    return {}


@pytest.fixture(scope="module")
def cart_overrides() -> dict[str, Any]:
    """Cart settings of a module's stack (a module overrides this fixture to change them)."""
    return {}


@pytest_asyncio.fixture(scope="module")
async def stack(
    postgres_admin_url: str,
    nats_url: str,
    dev_keys: DevKeys,
    order_overrides: dict[str, Any],
    cart_overrides: dict[str, Any],
) -> AsyncIterator[Stack]:
    """One inventory, customer, cart and order service per test module (tests use their own
    SKUs and customers)."""
    tokens = Tokens(dev_keys)
    names = {}
    urls = {}
    for label in ("inventory", "customer", "cart", "order"):
        names[label], urls[label] = await _database(postgres_admin_url, label)
    catalog = FakeCatalog()
    catalog_server = grpc.aio.server()
    from tenpo.catalog.v1 import catalog_service_pb2_grpc

    catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(catalog, catalog_server)
    catalog_port = catalog_server.add_insecure_port("127.0.0.1:0")
    await catalog_server.start()
    service_token = tokens.mint(subject="order-service", kind="service", scopes=SERVICE_SCOPES)
    try:
        async with contextlib.AsyncExitStack() as exits:
            inventory_host = await exits.enter_async_context(
                contextlib.asynccontextmanager(start_inventory)(
                    urls["inventory"], nats_url, dev_keys
                )
            )
            inventory_target = f"127.0.0.1:{inventory_host.port}"
            await migrations.upgrade(
                customer_definition.migrations,  # type: ignore[arg-type]
                urls["customer"],
            )
            customer_host = await exits.enter_async_context(
                running(
                    customer_definition,
                    customer_settings(
                        urls["customer"],
                        nats_url,
                        dev_keys,
                        inventory_target=inventory_target,
                        shutdown_grace_seconds=1.0,
                    ),
                )
            )
            customer_target = f"127.0.0.1:{customer_host.port}"
            upstreams = CartUpstreams(
                catalog,
                None,
                f"127.0.0.1:{catalog_port}",
                inventory_target,  # type: ignore[arg-type]
            )
            cart_host = await exits.enter_async_context(
                contextlib.asynccontextmanager(start_cart)(
                    urls["cart"], nats_url, dev_keys, upstreams, **cart_overrides
                )
            )
            cart_target = f"127.0.0.1:{cart_host.port}"
            order_host = await exits.enter_async_context(
                contextlib.asynccontextmanager(start_order)(
                    urls["order"],
                    nats_url,
                    dev_keys,
                    StaticToken(service_token),
                    cart_target=cart_target,
                    inventory_target=inventory_target,
                    customer_target=customer_target,
                    **order_overrides,
                )
            )

            def channel(target: str) -> grpc.aio.Channel:
                return grpc.aio.insecure_channel(target)

            inventory_channel = await exits.enter_async_context(channel(inventory_target))
            customer_channel = await exits.enter_async_context(channel(customer_target))
            cart_channel = await exits.enter_async_context(channel(cart_target))
            order_channel = await exits.enter_async_context(channel(f"127.0.0.1:{order_host.port}"))
            order_db = Database(urls["order"], pool_size=2, max_overflow=0)
            exits.push_async_callback(order_db.dispose)
            yield Stack(
                tokens=tokens,
                catalog=catalog,
                inventory=inventory_service_pb2_grpc.InventoryServiceStub(inventory_channel),
                carts=cart_service_pb2_grpc.CartServiceStub(cart_channel),
                orders=order_service_pb2_grpc.OrderServiceStub(order_channel),
                loyalty=loyalty_service_pb2_grpc.LoyaltyServiceStub(customer_channel),
                order_host=order_host,
                order_db=order_db,
                customer_host=customer_host,
                targets={
                    "inventory": inventory_target,
                    "customer": customer_target,
                    "cart": cart_target,
                },
                order_database_url=urls["order"],
            )
    finally:
        await catalog_server.stop(None)
        for name in names.values():
            drop_database(postgres_admin_url, name)


async def start_order(
    database_url: str, nats_url: str, dev_keys: DevKeys, tokens: StaticToken, **overrides: Any
) -> AsyncIterator[ServiceHost[OrderSettings]]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "grpc_port": 0,
        "database_pool_size": 20,
        "payment_timeout_seconds": 1.0,
        # Tests run the sweeper themselves (sweep_once), at the moment they choose.
        "sweep_interval_seconds": 3600,
        "shutdown_grace_seconds": 1.0,
        "customer_consumer": f"order-customer-{uuid.uuid4().hex[:8]}",
        **auth_settings(dev_keys),
    }
    settings = OrderSettings(**(values | overrides))
    with_tokens = dataclasses.replace(definition, build=functools.partial(build, tokens=tokens))
    async with running(with_tokens, settings) as host:
        yield host
