"""Customer wiring: signing keys, password hashing, the two servicers, seed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from services.customer.cli import bootstrap_staff
from services.customer.config import CustomerSettings
from services.customer.greetings import CHECKED_IN_SUBJECT
from services.customer.inventory import InventoryLocations
from services.customer.security import KeyRing
from services.customer.seed import seed_demo_customers
from services.customer.servicer import CustomerServicer, IdentityServicer
from services.customer.servicers.campaigns import CampaignServicer
from services.customer.servicers.interactions import InteractionServicer
from services.customer.servicers.loyalty import LoyaltyServicer
from services.customer.servicers.store_card import StoreCardServicer
from services.customer.subscribers import (
    cart_subscription,
    notification_subscription,
    order_subscription,
)
from services.customer.usecases.bundle import build_use_cases, service_exports
from services.customer.watch import BALANCE_SUBJECT, BalanceHub
from tenpo.customer.v1 import (
    campaign_service_pb2,
    campaign_service_pb2_grpc,
    customer_service_pb2,
    customer_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    interaction_service_pb2,
    interaction_service_pb2_grpc,
    loyalty_service_pb2,
    loyalty_service_pb2_grpc,
    store_card_service_pb2,
    store_card_service_pb2_grpc,
)
from tenpo.kit.auth import StaticJwks
from tenpo.kit.server import Runtime, ServiceDefinition

log = logging.getLogger(__name__)
#: How often expired tokens, hand-offs and lockout counters are deleted.
HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
#: How often queued password reset requests are looked for without a wake-up.
RESET_POLL_SECONDS = 5.0
MIGRATIONS = Path(__file__).with_name("migrations")
IDENTITY_SERVICE = identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
CUSTOMER_SERVICE = customer_service_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name
LOYALTY_SERVICE = loyalty_service_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name
CAMPAIGN_SERVICE = campaign_service_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name
STORE_CARD_SERVICE = store_card_service_pb2.DESCRIPTOR.services_by_name[
    "StoreCardService"
].full_name
INTERACTION_SERVICE = interaction_service_pb2.DESCRIPTOR.services_by_name[
    "InteractionService"
].full_name


async def build(runtime: Runtime[CustomerSettings]) -> None:
    inventory = InventoryLocations(
        runtime.settings.inventory_target, runtime.settings.inventory_timeout_seconds
    )
    runtime.on_stop.append(inventory.close)
    hub = BalanceHub(runtime.db)
    exports = service_exports(runtime.settings)
    runtime.on_stop.append(exports.close)
    cases = build_use_cases(runtime.settings, runtime.db, inventory, hub, exports)
    runtime.add_servicer(
        identity_service_pb2_grpc.add_IdentityServiceServicer_to_server,
        IdentityServicer(cases, runtime.page_tokens),
        IDENTITY_SERVICE,
    )
    runtime.add_servicer(
        customer_service_pb2_grpc.add_CustomerServiceServicer_to_server,
        CustomerServicer(cases, runtime.page_tokens),
        CUSTOMER_SERVICE,
    )
    runtime.add_servicer(
        loyalty_service_pb2_grpc.add_LoyaltyServiceServicer_to_server,
        LoyaltyServicer(cases.loyalty, runtime.page_tokens),
        LOYALTY_SERVICE,
    )
    runtime.add_servicer(
        interaction_service_pb2_grpc.add_InteractionServiceServicer_to_server,
        InteractionServicer(cases.timeline, runtime.page_tokens, cases.greetings),
        INTERACTION_SERVICE,
    )
    runtime.add_servicer(
        campaign_service_pb2_grpc.add_CampaignServiceServicer_to_server,
        CampaignServicer(cases.campaigns, runtime.page_tokens),
        CAMPAIGN_SERVICE,
    )
    runtime.add_servicer(
        store_card_service_pb2_grpc.add_StoreCardServiceServicer_to_server,
        StoreCardServicer(cases.store_cards, runtime.page_tokens),
        STORE_CARD_SERVICE,
    )
    settings = runtime.settings
    runtime.subscribe(
        order_subscription(cases.earning, settings.order_consumer, cases.segments, cases.timeline)
    )
    runtime.subscribe(cart_subscription(cases.timeline, settings.cart_consumer))
    runtime.subscribe(notification_subscription(cases.timeline, settings.notification_consumer))
    # Every replica hears every balance change (not a durable consumer): WatchBalance
    # streams on any replica see a change made on another within the relay's latency.
    await runtime.bus.broadcast(BALANCE_SUBJECT, hub.on_event)
    # Check-ins too: a banner streaming from any replica greets a check-in made on another.
    await runtime.bus.broadcast(CHECKED_IN_SUBJECT, cases.greetings.hub.on_event)

    async def end_streams() -> None:
        hub.close()  # open WatchBalance streams end with OK while the server drains
        cases.greetings.hub.close()

    runtime.on_drain.append(end_streams)

    async def housekeeping() -> None:
        # Every replica runs it; the deletes are idempotent, so that costs only queries.
        while True:
            deleted = await cases.sessions.purge_expired()
            if any(deleted.values()):
                log.info("expired credentials purged", extra={"deleted": deleted})
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)

    async def reset_mailer() -> None:
        # Woken by this replica's requests; the poll catches other replicas' leftovers and
        # requests queued while this one was down.
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESET_POLL_SECONDS):
                    await cases.mail.reset_requested.wait()
            cases.mail.reset_requested.clear()
            await cases.mail.handle_reset_requests()

    async def loyalty_sweeper() -> None:
        # Every replica sweeps; accounts are taken with SKIP LOCKED, so they share the work.
        while True:
            try:
                changed = await cases.loyalty.sweep()
                if changed:
                    log.info("loyalty accounts swept", extra={"accounts": changed})
                cards = await cases.store_cards.sweep()
                if cards:
                    log.info("store card holds swept", extra={"cards": cards})
            except Exception:
                log.exception("loyalty sweep failed; retrying at the next interval")
            await asyncio.sleep(runtime.settings.loyalty_sweep_interval_seconds)

    async def engagement_sweeper() -> None:
        # Every replica sweeps: due segment reviews are taken with SKIP LOCKED, and a
        # birthday is announced once per customer and year by its row's primary key.
        while True:
            try:
                changed = await cases.segments.sweep()
                if changed:
                    log.info("segment memberships changed by time", extra={"changes": changed})
                born = await cases.segments.announce_birthdays()
                if born:
                    log.info("birthdays announced", extra={"customers": born})
            except Exception:
                log.exception("engagement sweep failed; retrying at the next interval")
            await asyncio.sleep(runtime.settings.engagement_sweep_interval_seconds)

    runtime.background.extend([housekeeping, reset_mailer, loyalty_sweeper, engagement_sweeper])
    runtime.parts.update(balance_hub=hub, use_cases=cases)


async def seed(runtime: Runtime[CustomerSettings]) -> None:
    await seed_demo_customers(runtime.settings, runtime.db)


def own_keys(settings: CustomerSettings) -> StaticJwks:
    """The issuer checks tokens against its own key ring, not its JWKS over the network."""
    keys = KeyRing.from_files(
        settings.signing_key_files, issuer=settings.auth_issuer, audience=settings.auth_audience
    )
    return StaticJwks(keys.jwks())


definition = ServiceDefinition(
    name="customer",
    settings_type=CustomerSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
    jwks_source=own_keys,
    extra_cli={"bootstrap-staff": bootstrap_staff},
)
