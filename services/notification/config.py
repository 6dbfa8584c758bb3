"""Notification settings (environment prefix NOTIFICATION_, shared TENPO_ fallback)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import Environment, ServiceSettings

DEV_TRACKING_SECRET = "dev-tracking-secret-not-for-production"  # noqa: S105 (refused in production)
#: The cart seed's personal-code promotion ("birthday", uuid5 of the cart's demo namespace).
DEMO_PERSONAL_CODE_PROMOTION = "afcc9b2f-d3cb-5c6b-93c2-32c438b5b713"
#: The cart seed's welcome promotion (10 % off a first purchase; uuid5 "welcome").
DEMO_WELCOME_PROMOTION = "922a32f4-ce5a-5444-ae7a-c2ed6ceb00d6"


class NotificationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    service_name: str = "notification"
    grpc_port: int = 50056
    #: Durable consumer names of the customer, cart and order events (one per deployment).
    customer_consumer: str = "notification-customer"
    cart_consumer: str = "notification-cart"
    order_consumer: str = "notification-order"

    #: SMTP: host, port, implicit TLS or STARTTLS (None: when the server offers it), auth.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_use_tls: bool = False
    smtp_start_tls: bool | None = None
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "Tenpo <no-reply@tenpo.local>"

    #: SMS: "sink" (development: recorded only) or "twilio".
    sms_provider: str = Field(default="sink", pattern="^(sink|twilio)$")
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""
    #: Push: "sink" or "webpush" (VAPID).
    push_provider: str = Field(default="sink", pattern="^(sink|webpush)$")
    vapid_private_key: SecretStr = SecretStr("")
    vapid_subject: str = "mailto:ops@tenpo.local"

    #: Public base URL of the gateway, for tracking pixels, click and unsubscribe links.
    public_base_url: str = "http://127.0.0.1:8080"
    #: Key of the tracking tokens (HMAC-SHA256).
    tracking_secret: SecretStr = SecretStr(DEV_TRACKING_SECRET)
    #: Where links in account mails point (the shop's pages take the token).
    shop_base_url: str = "http://localhost:3000"

    #: The customer service (SignInClient, GetCustomer, IssueMailToken), the cart service
    #: (PromotionService.IssuePersonalCode) and the order service (a guest order's contact
    #: e-mail for her return mails, GetOrder).
    customer_target: str = ""
    cart_target: str = ""
    order_target: str = ""
    #: The catalog (products for journey mails: related products, a product she looked at),
    #: asked as an anonymous web shopper with the channel proof.
    catalog_target: str = ""
    #: This service's own client credentials (a back-office-tool client of the customer
    #: service, whose tokens are service tokens) with the scopes customers:read, mail:send,
    #: promotions:write, carts:read and orders:read; in development they come from the
    #: customer seed.
    service_client_id: str = ""
    service_client_secret: SecretStr = SecretStr("")
    #: The service token is reused this long (below the customer's client-token lifetime).
    service_token_refresh_seconds: float = Field(default=300.0, gt=0)
    #: A fixed service token instead of client credentials (tests; a platform that injects
    #: one). Client credentials win when both are set.
    customer_token: SecretStr = SecretStr("")
    outgoing_timeout_seconds: float = Field(default=3.0, gt=0)
    #: The code promotion the seeded abandoned-cart journey issues personal codes of (the
    #: cart demo's personal-code promotion; a real shop names its own).
    abandoned_cart_promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION
    #: The code promotion of the seeded birthday journey's personal code (20 % off in the
    #: cart demo) and of the lapsed customers' offer.
    birthday_promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION
    lapsed_promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION
    #: The code promotion of the personal code in the seeded welcome mail.
    welcome_promotion_id: str = DEMO_WELCOME_PROMOTION

    #: Recipients' time zone when the customer service has none.
    default_time_zone: str = "Asia/Tokyo"
    quiet_hours_start: str = Field(default="21:00", pattern=r"^\d\d:\d\d$")
    quiet_hours_end: str = Field(default="09:00", pattern=r"^\d\d:\d\d$")
    #: Marketing messages per recipient per local day, across channels.
    daily_marketing_cap: int = Field(default=2, ge=0)

    #: Sender and journey loops: how often they look without being woken, batch sizes.
    delivery_poll_seconds: float = Field(default=0.5, gt=0)
    delivery_batch_size: int = Field(default=20, ge=1, le=500)
    journey_poll_seconds: float = Field(default=1.0, gt=0)
    journey_batch_size: int = Field(default=50, ge=1, le=500)
    #: Seconds of the welcome journey's wait before the SMS reminder (the seed's 24 h).
    welcome_reminder_after_seconds: float = Field(default=24 * 3600.0, gt=0)
    #: How long the welcome mail's personal code is valid.
    welcome_code_valid_days: int = Field(default=30, ge=1, le=365)

    @model_validator(mode="after")
    def _notification_checks(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            problems = []
            if self.tracking_secret.get_secret_value() == DEV_TRACKING_SECRET:
                problems.append("tracking_secret must be set")
            if not self.public_base_url.startswith("https://"):
                problems.append("public_base_url must be https")
            if not self.customer_target:
                problems.append("customer_target must be set")
            if (
                not (self.service_client_id and self.service_client_secret.get_secret_value())
                and not self.customer_token.get_secret_value()
            ):
                problems.append("service_client_id and service_client_secret must be set")
            if problems:
                raise ValueError("unsafe notification settings: " + "; ".join(problems))
        return self
