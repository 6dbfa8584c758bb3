"""Cart settings (environment prefix CART_, shared TENPO_ fallback)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.kit.limits import declared
from tenpo.kit.settings import Environment, ServiceSettings

#: The contract's bound on a line's quantity (``tenpo.common.v1.limits``), which the gateway
#: documents and refuses past: the setting's default. Raise it only for callers of the gRPC
#: API itself (the benchmark adds one SKU thousands of times): the document says 10.
DECLARED_MAX_QUANTITY = declared(cart_api.AddLineItemRequest, "quantity").maximum or 10
DEV_CART_TOKEN_SECRET = "tenpo-development-cart-token-secret"  # noqa: S105 - refused outside dev


class CartSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CART_")

    service_name: str = "cart"
    grpc_port: int = 50054
    #: Where the catalog and inventory listen (``TENPO_CATALOG_TARGET`` serves every service).
    catalog_target: str = "127.0.0.1:50051"
    inventory_target: str = "127.0.0.1:50052"
    #: Deadline of one catalog lookup (prices, titles); a cart change fails UNAVAILABLE after it.
    catalog_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    #: Deadline of one availability check; after it the lines say UNKNOWN and the change goes on.
    inventory_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    #: How long a SKU's catalog data (price, title, offer) is reused before asking again.
    catalog_cache_seconds: float = Field(default=30.0, ge=0)
    #: How long inventory's answer for a (SKU, store or network) is reused: the cart shows
    #: availability up to this old (stock is promised only by the order saga's reservation,
    #: which reads inventory's truth); 0 asks on every change.
    availability_cache_seconds: float = Field(default=1.0, ge=0, le=600)
    #: A change asks inventory about the lines it adds or resizes; about every line when
    #: the last such answer is older than this (or the fulfilment changed).
    availability_recheck_seconds: float = Field(default=30.0, ge=0)
    #: Lines of recently changed carts kept in memory at their version (at most this many
    #: lines in all, about 1 KiB each), so a change reads the lines from the database only
    #: when another replica or process moved the cart on (and as many rendered line
    #: messages are reused in answers); 0 turns it off.
    known_lines: int = Field(default=50_000, ge=0, le=10_000_000)
    #: A cart read after this long is repriced (price events reprice sooner).
    reprice_after_seconds: float = Field(default=300.0, gt=0)
    max_quantity_per_line: int = Field(default=DECLARED_MAX_QUANTITY, ge=1, le=999)
    max_lines: int = Field(default=50, ge=1, le=500)
    #: Shipping (JPY, tax-inclusive): delivery, same-day, and the discounted subtotal from
    #: which delivery is free.
    delivery_fee: int = Field(default=550, ge=0)
    same_day_fee: int = Field(default=880, ge=0)
    free_delivery_threshold: int = Field(default=5000, ge=0)
    #: A customer cart (or a guest cart with an e-mail) idle this long is announced once as
    #: abandoned; guest carts idle for the expiry are closed.
    abandon_after_seconds: float = Field(default=4 * 3600.0, gt=0)
    guest_cart_expiry_seconds: float = Field(default=30 * 24 * 3600.0, gt=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    sweep_batch_size: int = Field(default=200, ge=1, le=10_000)
    #: Wrong promotion codes a principal (or a guest cart) may try per window before
    #: RESOURCE_EXHAUSTED, counted in the database: one limit across every replica.
    code_attempts: int = Field(default=10, ge=1)
    code_attempt_window_seconds: float = Field(default=900.0, gt=0)
    #: Durable consumer names (one per deployment).
    catalog_consumer: str = "cart-catalog"
    customer_consumer: str = "cart-customer"

    #: Key of the guest cart tokens (HMAC of the cart id); at least 32 characters outside
    #: development. Rotating it keeps existing carts reachable (their token hashes are stored).
    token_secret: SecretStr = SecretStr(DEV_CART_TOKEN_SECRET)

    @model_validator(mode="after")
    def _refuse_dev_token_secret(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            secret = self.token_secret.get_secret_value()
            if secret == DEV_CART_TOKEN_SECRET or len(secret) < 32:
                raise ValueError("unsafe settings for production: token_secret must be set")
        return self
