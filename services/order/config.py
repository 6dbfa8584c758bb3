"""Order settings (environment prefix ORDER_, shared TENPO_ fallback)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import Environment, ServiceSettings

#: Development only (refused in production): the key of pickup codes and guest order tokens.
DEV_CAPABILITY_SECRET = "dev-capability-secret-not-for-production"  # noqa: S105 - refused in production


class OrderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_")

    service_name: str = "order"
    grpc_port: int = 50055
    #: Where the services the saga calls listen (``TENPO_CART_TARGET`` serves every service).
    cart_target: str = "127.0.0.1:50054"
    inventory_target: str = "127.0.0.1:50052"
    customer_target: str = "127.0.0.1:50053"
    #: Deadline of one call to the cart or inventory.
    upstream_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    #: Deadline of one call to the payment provider.
    payment_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: The order service's own client credentials (a back-office-tool client of the
    #: customer service, whose tokens are service tokens), with the scopes
    #: inventory:write, carts:read, carts:checkout, promotions:redeem and loyalty:write.
    service_client_id: str = ""
    service_client_secret: SecretStr = SecretStr("")
    #: The service token is reused this long (below the customer's client-token lifetime).
    service_token_refresh_seconds: float = Field(default=300.0, gt=0)
    #: Payment provider for card payments. Only ``sandbox`` (the in-process test PSP) exists
    #: yet, so it is accepted everywhere, dev clusters (production mode) included; a real
    #: PSP adapter comes with its own settings.
    card_provider: Literal["sandbox"] = "sandbox"
    #: How long a saga's runner owns it without progress before the sweeper takes over.
    saga_lease_seconds: float = Field(default=30.0, gt=0)
    #: A saga waiting for a dependency is tried again after this.
    saga_retry_seconds: float = Field(default=2.0, gt=0)
    #: Sweeper runs of a saga waiting for the cart's checkout before giving it up.
    saga_max_attempts: int = Field(default=20, ge=1)
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    #: Durable consumer of the customer service's events (CustomerErased), one per
    #: deployment.
    customer_consumer: str = "order-customer"
    #: How long a konbini payment number is accepted (stock is held as long; inventory
    #: holds at most 14 days).
    konbini_payment_hours: float = Field(default=72.0, gt=0, le=13 * 24)
    #: Checkouts one process runs at once (more wait their turn, holding no connection);
    #: keep it below the database pool size.
    max_concurrent_checkouts: int = Field(default=16, ge=1, le=1000)
    #: How long stock and redemptions are held for a running checkout.
    hold_seconds: int = Field(default=900, ge=60, le=3600)
    #: How long ready click & collect goods wait at the store before the hold expires.
    pickup_hold_days: int = Field(default=7, ge=1, le=60)
    #: Units are taken back within this many days of the purchase.
    return_window_days: int = Field(default=30, ge=1, le=365)
    #: A return by mail's parcel must arrive within this many days of its authorization;
    #: after that the authorization expires and its units are returnable again.
    return_ship_days: int = Field(default=14, ge=1, le=90)
    #: How often a WatchOrder stream looks for a change (a one-row index lookup).
    watch_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    #: A finished guest order keeps its contact and address this long after it was placed
    #: (returns, questions), then loses them as an erased customer's order does.
    guest_data_retention_days: int = Field(default=180, ge=1, le=3650)
    #: A failed checkout (its request_id's stored answer) is deleted this long after it
    #: failed: a retry within it gets the same error, a later one is a new checkout.
    failed_retention_hours: float = Field(default=24.0, ge=1, le=24 * 90)
    #: A customer's failed checkouts beyond her newest this many are deleted sooner (the
    #: sweep, every minute): a caller failing at the rate limit keeps a bounded number.
    failed_max_per_customer: int = Field(default=100, ge=1, le=100_000)
    #: The key pickup codes (domain.fulfilments.PickupCodes) and guest order tokens
    #: (domain.orders.OrderTokens) are derived from, each under its own label: the database
    #: keeps neither. At least 32 characters in production.
    capability_secret: SecretStr = SecretStr(DEV_CAPABILITY_SECRET)

    @model_validator(mode="after")
    def _refuse_missing_credentials(self) -> Self:
        if self.environment is Environment.PRODUCTION and not (
            self.service_client_id and self.service_client_secret.get_secret_value()
        ):
            raise ValueError(
                "unsafe settings for production: service_client_id and "
                "service_client_secret must be set"
            )
        key = self.capability_secret.get_secret_value()
        if self.environment is Environment.PRODUCTION and (
            key == DEV_CAPABILITY_SECRET or len(key) < 32
        ):
            raise ValueError(
                "unsafe settings for production: capability_secret must be set (at least "
                "32 characters, not the development default)"
            )
        if len(key.encode()) < 16:
            raise ValueError("capability_secret must be at least 16 bytes")
        return self

    def client_credentials(self) -> tuple[str, str] | None:
        """The configured credentials; in development, else the ones the customer seed
        left in ``$TENPO_DATA_DIR/dev-credentials.json`` (``make run``)."""
        secret = self.service_client_secret.get_secret_value()
        if self.service_client_id and secret:
            return self.service_client_id, secret
        data_dir = os.environ.get("TENPO_DATA_DIR")
        if self.environment is Environment.PRODUCTION or not data_dir:
            return None
        try:
            document = json.loads((Path(data_dir) / "dev-credentials.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        entry = document.get("services", {}).get("order")
        if not entry:
            return None
        return str(entry["client_id"]), str(entry["client_secret"])
