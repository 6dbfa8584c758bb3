"""Notification wiring: providers, the service's own token, use cases, servicer, customer,
cart and order consumers (with the return mails), the sender and the journey runner, seed."""

from __future__ import annotations

import logging
from datetime import time, timedelta
from pathlib import Path

import grpc

from services.notification.config import NotificationSettings
from services.notification.contacts import Contacts, GrpcCarts, GrpcOrders
from services.notification.customers import CustomerDirectory, GrpcCustomerDirectory
from services.notification.domain.rules import QuietHours
from services.notification.products import GrpcProducts, ProductFinder
from services.notification.promotions import GrpcPromotions, PromotionIssuer
from services.notification.providers.push import PushSink, WebPush
from services.notification.providers.sms import SmsSink, TwilioSms
from services.notification.providers.smtp import SmtpSender
from services.notification.servicer import NotificationServicer
from services.notification.subscribers import mail_tokens
from services.notification.subscribers.commerce import cart_subscription, order_subscription
from services.notification.subscribers.customer import customer_subscription
from services.notification.subscribers.returns import return_handlers
from services.notification.usecases.journeys import Journeys
from services.notification.usecases.messages import Messages, Policy, Providers
from services.notification.usecases.push import PushSubscriptions
from services.notification.usecases.recipients import Recipients
from services.notification.usecases.templates import Templates
from services.notification.usecases.tracking import Deliveries, Tracking
from services.notification.wakeup import JOURNEYS, MESSAGES, Listener
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.clients import create_channel
from tenpo.kit.server import Runtime, ServiceDefinition
from tenpo.kit.service_token import (
    ClientCredentials,
    StaticToken,
    TokenSource,
    configured_credentials,
)
from tenpo.notification.v1 import notification_service_pb2, notification_service_pb2_grpc

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name


def providers(settings: NotificationSettings) -> Providers:
    sms: SmsSink | TwilioSms = SmsSink()
    if settings.sms_provider == "twilio":
        sms = TwilioSms(
            base_url=settings.twilio_base_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            sender=settings.twilio_from,
            timeout_seconds=settings.outgoing_timeout_seconds,
        )
    push: PushSink | WebPush = PushSink()
    if settings.push_provider == "webpush":
        push = WebPush(
            vapid_private_key=settings.vapid_private_key.get_secret_value(),
            subject=settings.vapid_subject,
            timeout_seconds=settings.outgoing_timeout_seconds,
        )
    email = SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        use_tls=settings.smtp_use_tls,
        start_tls=settings.smtp_start_tls,
        timeout_seconds=settings.smtp_timeout_seconds,
    )
    return Providers(email=email, sms=sms, push=push)


def service_tokens(
    settings: NotificationSettings, customer: grpc.aio.Channel | None
) -> TokenSource:
    """Client credentials when configured (in development: the customer seed's), else the
    fixed token (tests, a platform-injected one), else none (calls are refused, and the
    service says why at start-up)."""
    credentials = configured_credentials(
        "notification",
        settings.service_client_id,
        settings.service_client_secret.get_secret_value(),
        settings.environment,
    )
    if credentials is not None and customer is not None:
        return ClientCredentials(
            customer,
            *credentials,
            timeout_seconds=settings.outgoing_timeout_seconds,
            refresh_seconds=settings.service_token_refresh_seconds,
        )
    if not settings.customer_token.get_secret_value():
        log.warning(
            "no client credentials (NOTIFICATION_SERVICE_CLIENT_ID/SECRET) or token: calls to "
            "the customer and cart services will be refused"
        )
    return StaticToken(settings.customer_token.get_secret_value())


def _time(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


async def build(
    runtime: Runtime[NotificationSettings],
    *,
    directory: CustomerDirectory | None = None,
    channel_providers: Providers | None = None,
    promotions: PromotionIssuer | None = None,
    products: ProductFinder | None = None,
    guests: Contacts | None = None,
    orders: Contacts | None = None,
) -> None:
    """Wire the service; tests and benchmarks hand in their own customer directory,
    providers, promotion issuer and product finder."""
    settings = runtime.settings
    timeout = settings.outgoing_timeout_seconds
    trace = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)
    # Channels connect on first use: no I/O at start-up.
    channels_out = {
        name: create_channel(target, timeout_seconds=timeout, max_attempts=3, trace=trace)
        for name, target in (
            ("customer", settings.customer_target),
            ("cart", settings.cart_target),
            ("catalog", settings.catalog_target),
            ("order", settings.order_target),
        )
        if target
    }
    tokens = service_tokens(settings, channels_out.get("customer"))
    directory = directory or GrpcCustomerDirectory(channels_out.get("customer"), tokens, timeout)
    promotions = promotions or GrpcPromotions(channels_out.get("cart"), tokens, timeout)
    products = products or GrpcProducts(
        channels_out.get("customer"),
        channels_out.get("catalog"),
        tokens,
        ChannelAssertion(settings.channel_assertion_secret.get_secret_value()),
        timeout,
    )
    recipients = Recipients(runtime.db, directory, settings.default_time_zone)
    policy = Policy(
        quiet_hours=QuietHours(_time(settings.quiet_hours_start), _time(settings.quiet_hours_end)),
        daily_cap=settings.daily_marketing_cap,
        default_time_zone=settings.default_time_zone,
        public_base_url=settings.public_base_url.rstrip("/"),
        tracking_secret=settings.tracking_secret.get_secret_value().encode(),
        shop_base_url=settings.shop_base_url.rstrip("/"),
    )
    channels = channel_providers or providers(settings)
    messages = Messages(runtime.db, recipients, directory, channels, policy)
    journeys = Journeys(runtime.db, messages, promotions, products)
    tracking = Tracking(runtime.db, policy.tracking_secret)
    templates = Templates(runtime.db)
    runtime.add_servicer(
        notification_service_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(
            templates,
            messages,
            recipients,
            journeys,
            tracking,
            runtime.page_tokens,
            Deliveries(runtime.db),
            PushSubscriptions(runtime.db),
        ),
        SERVICE_NAME,
    )
    runtime.subscribe(customer_subscription(recipients, journeys, settings.customer_consumer))
    guests = guests or GrpcCarts(channels_out.get("cart"), tokens, timeout)
    runtime.subscribe(cart_subscription(journeys, settings.cart_consumer, messages, guests))
    orders = orders or GrpcOrders(channels_out.get("order"), tokens, timeout)
    returns = return_handlers(messages, orders, settings.default_time_zone)
    runtime.subscribe(order_subscription(journeys, settings.order_consumer, more=returns))
    if mail_tokens.CONTRACT_READY:
        runtime.subscribe(
            mail_tokens.mail_subscription(
                recipients, messages, journeys, f"{settings.customer_consumer}-mail"
            )
        )
    else:
        log.warning(
            "the customer service's id-only events are not in this build: registration and "
            "account mails are not consumed"
        )

    async def deliver() -> None:
        await messages.run_delivery(settings.delivery_poll_seconds, settings.delivery_batch_size)

    async def advance_journeys() -> None:
        await journeys.run(settings.journey_poll_seconds, settings.journey_batch_size)

    listener = Listener(settings.database_url, {MESSAGES: messages.queued, JOURNEYS: journeys.due})
    runtime.background.extend([listener.run, deliver, advance_journeys])

    async def close() -> None:
        for channel in channels_out.values():
            await channel.close(grace=None)
        if isinstance(channels.email, SmtpSender):
            await channels.email.close()
        if isinstance(channels.sms, TwilioSms):
            await channels.sms.close()

    runtime.on_stop.append(close)
    runtime.parts.update(
        messages=messages, journeys=journeys, recipients=recipients, tracking=tracking
    )


async def seed(runtime: Runtime[NotificationSettings]) -> None:
    from services.notification.seed import seed_defaults

    settings = runtime.settings
    await seed_defaults(
        runtime.db,
        timedelta(seconds=settings.welcome_reminder_after_seconds),
        settings.abandoned_cart_promotion_id,
        birthday_promotion_id=settings.birthday_promotion_id,
        lapsed_promotion_id=settings.lapsed_promotion_id,
        welcome_promotion_id=settings.welcome_promotion_id,
        welcome_code_valid_for=timedelta(days=settings.welcome_code_valid_days),
    )


definition = ServiceDefinition(
    name="notification",
    settings_type=NotificationSettings,
    build=build,
    migrations=MIGRATIONS,
    seed=seed,
)
