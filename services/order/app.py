"""Order wiring: the order servicer, the saga with its clients (cart, inventory, customer
for the service token) and payment providers, the saga sweeper."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from services.order.config import OrderSettings
from services.order.domain.fulfilments import FulfillmentPolicy, PickupCodes
from services.order.domain.orders import OrderTokens, PaymentMethod
from services.order.domain.payments import PaymentProvider
from services.order.payments.konbini import KonbiniPayments
from services.order.payments.sandbox import PayAtStore, SandboxPayments
from services.order.servicers.orders import OrderServicer
from services.order.subscribers import customer_subscription
from services.order.upstream import CartClient, InventoryClient, LoyaltyClient
from services.order.usecases.checkout import Checkout, SagaPolicy
from services.order.usecases.fulfilments import Fulfilments
from services.order.usecases.mail_returns import MailReturns
from services.order.usecases.orders import Orders
from services.order.usecases.retention import purge_failed_every
from services.order.usecases.returns import Returns
from services.order.usecases.search import forget_guests_every
from tenpo.kit.clients import create_channel
from tenpo.kit.server import Runtime, ServiceDefinition
from tenpo.kit.service_token import ClientCredentials, TokenSource
from tenpo.order.v1 import order_service_pb2, order_service_pb2_grpc

MIGRATIONS = Path(__file__).with_name("migrations")
ORDER_SERVICE = order_service_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


def policy_of(settings: OrderSettings) -> SagaPolicy:
    return SagaPolicy(
        lease=timedelta(seconds=settings.saga_lease_seconds),
        retry_after=timedelta(seconds=settings.saga_retry_seconds),
        hold=timedelta(seconds=settings.hold_seconds),
        payment_timeout_seconds=settings.payment_timeout_seconds,
        max_attempts=settings.saga_max_attempts,
        max_concurrent=settings.max_concurrent_checkouts,
        konbini_window=timedelta(hours=settings.konbini_payment_hours),
    )


async def build(runtime: Runtime[OrderSettings], tokens: TokenSource | None = None) -> None:
    """``tokens`` replaces the client-credentials sign-in (in-process tests)."""
    settings = runtime.settings
    trace = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)
    timeout = settings.upstream_timeout_seconds
    channels = {
        name: create_channel(target, timeout_seconds=timeout, max_attempts=2, trace=trace)
        for name, target in (
            ("cart", settings.cart_target),
            ("inventory", settings.inventory_target),
            ("customer", settings.customer_target),
        )
    }
    if tokens is None:
        credentials = settings.client_credentials()
        if credentials is None:
            raise RuntimeError(
                "the order service needs its client credentials: set ORDER_SERVICE_CLIENT_ID "
                "and ORDER_SERVICE_CLIENT_SECRET (make run takes them from the customer seed)"
            )
        tokens = ClientCredentials(
            channels["customer"],
            *credentials,
            timeout_seconds=timeout,
            refresh_seconds=settings.service_token_refresh_seconds,
        )
    cart = CartClient(channels["cart"], tokens, timeout)
    inventory = InventoryClient(channels["inventory"], tokens, timeout)
    sandbox = SandboxPayments(runtime.db)
    konbini = KonbiniPayments(runtime.db, timedelta(hours=settings.konbini_payment_hours))
    payments: Mapping[PaymentMethod, PaymentProvider] = {
        PaymentMethod.CARD: sandbox,
        PaymentMethod.PAY_AT_STORE: PayAtStore(),
        PaymentMethod.KONBINI: konbini,
    }
    loyalty = LoyaltyClient(channels["customer"], tokens, timeout)
    checkout = Checkout(runtime.db, cart, inventory, payments, policy_of(settings), loyalty=loyalty)
    key = settings.capability_secret.get_secret_value().encode()
    orders = Orders(
        runtime.db,
        inventory,
        payments,
        payment_timeout_seconds=settings.payment_timeout_seconds,
        tokens=OrderTokens(key),
    )
    fulfilments = Fulfilments(
        runtime.db,
        inventory,
        payments,
        FulfillmentPolicy(pickup_hold=timedelta(days=settings.pickup_hold_days)),
        payment_timeout_seconds=settings.payment_timeout_seconds,
        codes=PickupCodes(key),
        tokens=OrderTokens(key),
        lease=timedelta(seconds=settings.saga_lease_seconds),
        watch_poll_seconds=settings.watch_poll_seconds,
    )
    # Before serving: codes issued in plain text by an older release become digests.
    await fulfilments.rekey_legacy_codes()
    checkout.on_placed = fulfilments.on_placed
    returns = Returns(
        runtime.db,
        inventory,
        payments,
        window=timedelta(days=settings.return_window_days),
        payment_timeout_seconds=settings.payment_timeout_seconds,
    )
    mail_returns = MailReturns(
        runtime.db, orders, returns, ship_within=timedelta(days=settings.return_ship_days)
    )
    runtime.add_servicer(
        order_service_pb2_grpc.add_OrderServiceServicer_to_server,
        OrderServicer(checkout, orders, runtime.page_tokens, fulfilments, returns, mail_returns),
        ORDER_SERVICE,
    )

    async def sweep() -> None:
        await checkout.sweep(settings.sweep_interval_seconds)

    async def sweep_fulfilments() -> None:
        await fulfilments.sweep(settings.sweep_interval_seconds)

    async def forget_old_guests() -> None:
        # Hourly is plenty for a retention counted in days.
        await forget_guests_every(
            runtime.db, timedelta(days=settings.guest_data_retention_days), 3600
        )

    async def purge_failed_checkouts() -> None:
        await purge_failed_every(
            runtime.db,
            timedelta(hours=settings.failed_retention_hours),
            settings.failed_max_per_customer,
        )

    runtime.background.extend([sweep, sweep_fulfilments, forget_old_guests, purge_failed_checkouts])
    runtime.subscribe(customer_subscription(settings.customer_consumer))

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.close(None)

    runtime.on_stop.append(close_channels)
    runtime.parts.update(
        checkout=checkout,
        orders=orders,
        sandbox=sandbox,
        fulfilments=fulfilments,
        returns=returns,
        mail_returns=mail_returns,
        konbini=konbini,
    )


async def seed(runtime: Runtime[OrderSettings]) -> None:
    from services.order.seed import seed_demo_orders

    await seed_demo_orders(runtime.settings, runtime.db)


definition = ServiceDefinition(
    name="order",
    settings_type=OrderSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
)
