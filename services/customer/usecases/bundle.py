"""Customer use cases, wired: every use-case object of the service from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.customer.config import CustomerSettings
from services.customer.domain import loyalty as ld
from services.customer.domain import segments as sd
from services.customer.domain import tiers
from services.customer.exports import ServiceExports
from services.customer.inventory import InventoryLocations
from services.customer.security import KeyRing, Passwords
from services.customer.usecases.addresses import Addresses
from services.customer.usecases.campaigns import Campaigns
from services.customer.usecases.clients import Clients, StoreDirectory
from services.customer.usecases.common import Context, Policy
from services.customer.usecases.consent import Consents
from services.customer.usecases.earning import Earning, EarningPolicy
from services.customer.usecases.greetings import GreetingPolicy, Greetings
from services.customer.usecases.handoff import Handoff
from services.customer.usecases.loyalty import Loyalty, LoyaltyPolicy
from services.customer.usecases.mail_tokens import MailTokens
from services.customer.usecases.overview import Overviews
from services.customer.usecases.privacy import Privacy
from services.customer.usecases.profiles import Profiles
from services.customer.usecases.segments import Segments
from services.customer.usecases.sessions import Sessions
from services.customer.usecases.staff import Staff
from services.customer.usecases.store_card import StoreCardPolicy, StoreCards
from services.customer.usecases.timeline import Timeline
from services.customer.watch import BalanceHub
from tenpo.common.v1 import common_pb2
from tenpo.kit.db import Database


@dataclass(frozen=True)
class CustomerUseCases:
    context: Context
    sessions: Sessions
    mail: MailTokens
    staff: Staff
    clients: Clients
    handoff: Handoff
    profiles: Profiles
    addresses: Addresses
    consents: Consents
    privacy: Privacy
    loyalty: Loyalty
    earning: Earning
    campaigns: Campaigns
    store_cards: StoreCards
    overviews: Overviews
    timeline: Timeline
    segments: Segments
    greetings: Greetings


def loyalty_policy(settings: CustomerSettings) -> LoyaltyPolicy:
    return LoyaltyPolicy(
        rules=ld.EarnRules(
            yen_per_point=settings.loyalty_yen_per_point,
            tier_multipliers=ld.parse_tier_multipliers(settings.loyalty_tier_multipliers),
            points_ttl=timedelta(days=settings.loyalty_points_ttl_days),
        ),
        reservation_ttl=timedelta(seconds=settings.loyalty_reservation_ttl_seconds),
        watch_max_seconds=settings.loyalty_watch_max_seconds,
    )


def earning_policy(settings: CustomerSettings) -> EarningPolicy:
    return EarningPolicy(
        return_window=timedelta(days=settings.loyalty_return_window_days),
        tiers=tiers.TierRules(
            thresholds=tiers.parse_thresholds(settings.loyalty_tier_thresholds),
            period_months=settings.loyalty_tier_period_months,
        ),
    )


def segment_rules(settings: CustomerSettings, rules: tiers.TierRules) -> sd.SegmentRules:
    ranks = {tier: rules.rank(tier) for tier in (ld.DEFAULT_TIER, *rules.thresholds)}
    min_tier = settings.segment_loyal_min_tier.strip().upper()
    if min_tier and min_tier not in ranks:
        raise ValueError(f"segment_loyal_min_tier must be one of {sorted(ranks)} or empty")
    return sd.SegmentRules(
        lapsed_after=timedelta(days=settings.segment_lapsed_after_days),
        loyal_min_orders=settings.segment_loyal_min_orders,
        loyal_min_tier_rank=ranks[min_tier] if min_tier else None,
        custom=sd.parse_custom(settings.segment_rules, ranks),
    )


def service_exports(settings: CustomerSettings) -> ServiceExports:
    return ServiceExports(
        {
            "order": settings.order_target,
            "cart": settings.cart_target,
            "notification": settings.notification_target,
        },
        settings.export_timeout_seconds,
    )


def build_use_cases(
    settings: CustomerSettings,
    db: Database,
    stores: StoreDirectory | None = None,
    hub: BalanceHub | None = None,
    exports: ServiceExports | None = None,
) -> CustomerUseCases:
    """The use cases from settings; refuses to run without signing keys. Store ids are
    checked with inventory unless ``stores`` says otherwise."""
    keys = KeyRing.from_files(
        settings.signing_key_files, issuer=settings.auth_issuer, audience=settings.auth_audience
    )
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        max_concurrency=settings.argon2_max_concurrency,
    )
    context = Context(db, keys, passwords, Policy.from_settings(settings))
    mail = MailTokens(context)
    loyalty = Loyalty(context, loyalty_policy(settings), hub or BalanceHub(db))
    earning = earning_policy(settings)
    campaigns = Campaigns(
        context, earning.tiers, [int(v) for v in common_pb2.Channel.values() if v]
    )
    return CustomerUseCases(
        context=context,
        sessions=Sessions(context, mail),
        mail=mail,
        staff=Staff(context),
        clients=Clients(
            context,
            stores
            or InventoryLocations(settings.inventory_target, settings.inventory_timeout_seconds),
        ),
        handoff=Handoff(context),
        profiles=Profiles(context, mail),
        addresses=Addresses(context),
        consents=Consents(context, mail),
        privacy=Privacy(context, exports or service_exports(settings)),
        loyalty=loyalty,
        earning=Earning(context, loyalty, earning, campaigns),
        campaigns=campaigns,
        store_cards=StoreCards(
            context,
            StoreCardPolicy(
                max_balance_yen=settings.store_card_max_balance_yen,
                hold_ttl=timedelta(seconds=settings.store_card_hold_ttl_seconds),
            ),
        ),
        timeline=Timeline(context),
        overviews=Overviews(context),
        segments=Segments(context, segment_rules(settings, earning.tiers), earning.tiers, loyalty),
        greetings=Greetings(
            context,
            GreetingPolicy(
                display_seconds=settings.greeting_display_seconds,
                watch_max_seconds=settings.greeting_watch_max_seconds,
                repeat_after=timedelta(seconds=settings.greeting_repeat_after_seconds),
            ),
        ),
    )
