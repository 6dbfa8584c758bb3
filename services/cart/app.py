"""Cart wiring: carts and promotions servicers, catalog and inventory clients, the
abandonment sweep, catalog and customer event consumers, demo promotions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.cart.config import CartSettings
from services.cart.domain.carts import CartLimits
from services.cart.domain.pricing import ShippingPolicy
from services.cart.servicers.carts import CartServicer
from services.cart.servicers.promotions import PromotionServicer
from services.cart.subscribers import catalog_subscription, customer_subscription
from services.cart.upstream import CatalogClient, InventoryClient
from services.cart.usecases.abandonment import Abandonment
from services.cart.usecases.carts import Carts
from services.cart.usecases.promotions import Promotions
from services.cart.usecases.redemptions import Redemptions
from tenpo.cart.v1 import (
    cart_service_pb2,
    cart_service_pb2_grpc,
    promotion_service_pb2,
    promotion_service_pb2_grpc,
)
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.clients import create_channel
from tenpo.kit.server import Runtime, ServiceDefinition

MIGRATIONS = Path(__file__).with_name("migrations")
CART_SERVICE = cart_service_pb2.DESCRIPTOR.services_by_name["CartService"].full_name
PROMOTION_SERVICE = promotion_service_pb2.DESCRIPTOR.services_by_name["PromotionService"].full_name


async def build(runtime: Runtime[CartSettings]) -> None:
    settings = runtime.settings
    trace = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)
    catalog_channel = create_channel(
        settings.catalog_target, timeout_seconds=settings.catalog_timeout_seconds, trace=trace
    )
    inventory_channel = create_channel(
        settings.inventory_target,
        timeout_seconds=settings.inventory_timeout_seconds,
        # One retry at most, within the short deadline: a slow or absent inventory must not
        # hold a cart change up; the lines say UNKNOWN instead.
        max_attempts=2,
        trace=trace,
    )
    catalog = CatalogClient(
        catalog_channel,
        timeout_seconds=settings.catalog_timeout_seconds,
        cache_seconds=settings.catalog_cache_seconds,
        channel_assertion=ChannelAssertion(settings.channel_assertion_secret.get_secret_value()),
    )
    inventory = InventoryClient(
        inventory_channel,
        timeout_seconds=settings.inventory_timeout_seconds,
        cache_seconds=settings.availability_cache_seconds,
    )
    carts = Carts(
        runtime.db,
        catalog,
        inventory,
        token_key=settings.token_secret.get_secret_value().encode(),
        limits=CartLimits(settings.max_quantity_per_line, settings.max_lines),
        shipping=ShippingPolicy(
            settings.delivery_fee, settings.same_day_fee, settings.free_delivery_threshold
        ),
        reprice_after_seconds=settings.reprice_after_seconds,
        availability_recheck_seconds=settings.availability_recheck_seconds,
        code_attempts=settings.code_attempts,
        code_attempt_window_seconds=settings.code_attempt_window_seconds,
        known_lines=settings.known_lines,
    )
    promotions = Promotions(runtime.db, on_change=carts.automatic.invalidate)
    redemptions = Redemptions(runtime.db, carts)
    abandonment = Abandonment(
        runtime.db,
        carts,
        idle=timedelta(seconds=settings.abandon_after_seconds),
        guest_expiry=timedelta(seconds=settings.guest_cart_expiry_seconds),
        code_attempt_window=timedelta(seconds=settings.code_attempt_window_seconds),
        batch_size=settings.sweep_batch_size,
    )
    runtime.add_servicer(
        cart_service_pb2_grpc.add_CartServiceServicer_to_server,
        CartServicer(carts, rendered_lines=settings.known_lines),
        CART_SERVICE,
    )
    runtime.add_servicer(
        promotion_service_pb2_grpc.add_PromotionServiceServicer_to_server,
        PromotionServicer(promotions, redemptions, runtime.page_tokens),
        PROMOTION_SERVICE,
    )
    runtime.subscribe(catalog_subscription(carts, settings.catalog_consumer))
    runtime.subscribe(customer_subscription(carts, settings.customer_consumer))

    async def sweep() -> None:
        await abandonment.run(settings.sweep_interval_seconds)

    runtime.background.append(sweep)

    async def close_channels() -> None:
        await catalog_channel.close(None)
        await inventory_channel.close(None)

    runtime.on_stop.append(close_channels)
    runtime.parts.update(
        carts=carts, promotions=promotions, redemptions=redemptions, abandonment=abandonment
    )


async def seed(runtime: Runtime[CartSettings]) -> None:
    from services.cart.seed import seed_demo_promotions

    await seed_demo_promotions(runtime.db)


definition = ServiceDefinition(
    name="cart",
    settings_type=CartSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
)
