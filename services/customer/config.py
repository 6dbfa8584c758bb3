"""Customer settings (environment prefix CUSTOMER_, shared TENPO_ fallback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import Environment, ServiceSettings

#: The development key file that the dev stack writes next to its JWKS.
DEV_SIGNING_KEY_FILE = "signing-key.pem"
#: Below these, argon2id no longer slows down an offline attack meaningfully.
MIN_PRODUCTION_ARGON2_MEMORY_KIB = 19 * 1024
MIN_PRODUCTION_ARGON2_TIME_COST = 2


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_")

    service_name: str = "customer"
    grpc_port: int = 50053

    #: PEM private keys (ES256, RS256 or EdDSA). The first signs; all are published in the
    #: JWKS, so after a rotation (new key first, old key second) tokens signed with the old
    #: key stay valid until they expire. In development this defaults to the dev stack's
    #: key next to ``auth_jwks_file``.
    signing_key_files: list[Path] = []

    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    #: Client-credentials tokens of devices and back-office tools.
    client_token_ttl_seconds: int = Field(default=3600, ge=30, le=24 * 3600)
    #: Customer tokens handed to an in-store device.
    device_session_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    #: How long a device hand-off code can be approved and exchanged.
    device_session_code_ttl_seconds: int = Field(default=300, ge=1, le=1800)
    device_session_poll_interval_seconds: int = Field(default=2, ge=1, le=30)

    #: The inventory service (host:port), asked whether a device client's store exists when
    #: the client is created. The dev stack sets ``TENPO_INVENTORY_TARGET``.
    inventory_target: str = ""
    #: Deadline of that call (retries of an unavailable inventory included).
    inventory_timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    #: The services whose data ExportCustomerData gathers (host:port; the dev stack sets
    #: ``TENPO_<SERVICE>_TARGET``). One left empty shows in the export as UNAVAILABLE
    #: (``<SERVICE>_NOT_CONFIGURED``).
    order_target: str = ""
    cart_target: str = ""
    notification_target: str = ""
    #: Deadline of each of those calls; a service slower than this is UNAVAILABLE in it.
    export_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    #: Loyalty earn rules: one point per this many yen paid, times the customer's tier
    #: multiplier (tiers without an entry earn as STANDARD), rounded down.
    loyalty_yen_per_point: int = Field(default=100, ge=1, le=100_000)
    loyalty_tier_multipliers: dict[str, float] = {"STANDARD": 1.0, "SILVER": 1.5, "GOLD": 2.0}
    #: Earned points expire this long after they were earned (oldest first).
    loyalty_points_ttl_days: float = Field(default=365.0, gt=0, le=3650)
    #: An uncommitted points reservation is released by itself after this long.
    loyalty_reservation_ttl_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    #: How often each replica sweeps expired points and holds (SKIP LOCKED: they share it).
    loyalty_sweep_interval_seconds: float = Field(default=60.0, gt=0, le=24 * 3600)
    #: Points an order earns are pending this long after it was placed (returns lower
    #: them), then available. The sweep makes them available.
    loyalty_return_window_days: float = Field(default=30.0, ge=0, le=365)
    #: Tiers by twelve-month spend (JPY, orders less returns): a tier is reached at its
    #: threshold and kept until the end of the period after the last one it was reached in.
    loyalty_tier_thresholds: dict[str, int] = {"SILVER": 50_000, "GOLD": 200_000}
    #: Length of a tier period in months, calendar-aligned (12: calendar years).
    loyalty_tier_period_months: Literal[1, 2, 3, 4, 6, 12] = 12
    #: The most a prepaid store card may hold (JPY); a top-up beyond it is refused.
    store_card_max_balance_yen: int = Field(default=100_000, ge=1, le=10_000_000)
    #: An uncommitted store card payment hold is released by itself after this long.
    store_card_hold_ttl_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    #: Durable consumer of the order service's events (one per deployment).
    order_consumer: str = "customer-order"
    #: Durable consumers of the cart and notification services' events (the timeline).
    cart_consumer: str = "customer-cart"
    notification_consumer: str = "customer-notification"
    #: Longest a WatchBalance stream stays open; clients reconnect.
    loyalty_watch_max_seconds: float = Field(default=300.0, gt=0, le=3600)

    #: Computed segments: a customer is "lapsed" this long after her last order.
    segment_lapsed_after_days: float = Field(default=183.0, gt=0, le=3650)
    #: "loyal" from this many orders (cancelled ones not counted)...
    segment_loyal_min_orders: int = Field(default=5, ge=1, le=10_000)
    #: ...or from this tier on (empty: by orders only).
    segment_loyal_min_tier: str = "GOLD"
    #: Custom segments as data, JSON: {"big_spender": {"min_twelve_month_spend_yen": 100000}};
    #: conditions: min_orders, max_orders, min_twelve_month_spend_yen, min_channels,
    #: channels_any (channel numbers), ordered_within_days, min_tier. All given must hold.
    segment_rules: dict[str, dict[str, Any]] = {}
    #: How often each replica looks for segments time has changed and for today's
    #: birthdays (both are leased in rows, so replicas share the work).
    engagement_sweep_interval_seconds: float = Field(default=600.0, gt=0, le=24 * 3600)

    #: Store welcome banners: a greeting is shown this long, a banner's stream stays open
    #: this long (devices reconnect), and a second check-in at the same store within the
    #: repeat time is not greeted again.
    greeting_display_seconds: int = Field(default=20, ge=1, le=600)
    greeting_watch_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    greeting_repeat_after_seconds: float = Field(default=600.0, ge=0, le=24 * 3600)

    password_reset_ttl_seconds: int = Field(default=1800, ge=60)
    email_verification_ttl_seconds: int = Field(default=48 * 3600, ge=60)
    consent_confirmation_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    #: Failed sign-ins (per e-mail, known or not) before sign-in locks; each further failure
    #: doubles the lock, from the base up to the maximum.
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_base_seconds: float = Field(default=30.0, gt=0)
    lockout_max_seconds: float = Field(default=3600.0, gt=0)

    #: argon2id cost. Tests lower it; production refuses values below OWASP's minimum.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=2, ge=1)
    #: Hashes computed at once per process; each holds argon2_memory_kib of memory.
    argon2_max_concurrency: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _customer_defaults(self) -> Self:
        if (
            not self.signing_key_files
            and self.environment is Environment.DEVELOPMENT
            and self.auth_jwks_file is not None
        ):
            self.signing_key_files = [self.auth_jwks_file.parent / DEV_SIGNING_KEY_FILE]
        if self.environment is Environment.PRODUCTION:
            problems = []
            if not self.signing_key_files:
                problems.append("signing_key_files must be set")
            if not self.inventory_target:
                problems.append("inventory_target must be set")
            if self.argon2_memory_kib < MIN_PRODUCTION_ARGON2_MEMORY_KIB:
                problems.append(f"argon2_memory_kib must be >= {MIN_PRODUCTION_ARGON2_MEMORY_KIB}")
            if self.argon2_time_cost < MIN_PRODUCTION_ARGON2_TIME_COST:
                problems.append(f"argon2_time_cost must be >= {MIN_PRODUCTION_ARGON2_TIME_COST}")
            if not self.auth_issuer.startswith("https://"):
                problems.append("auth_issuer must be an https URL")
            if problems:
                raise ValueError("unsafe customer settings for production: " + "; ".join(problems))
        return self
