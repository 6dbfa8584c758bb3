"""Cart tables (SQLAlchemy 2 Core, typed columns); migrations are generated from these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import service_metadata

metadata = service_metadata()

_now = sa.func.now()
_ts = sa.DateTime(timezone=True)

carts = sa.Table(
    "carts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("customer_id", sa.Text),
    # sha256 of the guest's cart token: the token itself is never stored.
    sa.Column("guest_token_hash", sa.LargeBinary),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("fulfillment", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("codes", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("loyalty_points", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("contact_email", sa.Text),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("priced_channel", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("priced_at", _ts),
    sa.Column("availability_checked_at", _ts),
    sa.Column("order_id", sa.Text),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Column("updated_at", _ts, nullable=False, server_default=_now),
    sa.Column("last_activity_at", _ts, nullable=False, server_default=_now),
    # The idle period CartAbandoned announced (its last_activity_at); a later activity
    # starts a new one.
    sa.Column("abandoned_at", _ts),
    sa.CheckConstraint(
        "customer_id IS NOT NULL OR guest_token_hash IS NOT NULL", name="owner_or_capability"
    ),
    sa.CheckConstraint("loyalty_points >= 0", name="loyalty_points_not_negative"),
    # One ACTIVE cart per customer, across every channel.
    sa.Index(
        "uq_carts_active_customer",
        "customer_id",
        unique=True,
        postgresql_where=sa.text("status = 1"),
    ),
    # The abandonment and expiry sweeps walk active carts by idle time.
    sa.Index("ix_carts_idle", "last_activity_at", postgresql_where=sa.text("status = 1")),
)

cart_lines = sa.Table(
    "cart_lines",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "cart_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("carts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("product_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("image_url", sa.Text, nullable=False),
    sa.Column("unit_price", sa.BigInteger, nullable=False),
    sa.Column("regular_price", sa.BigInteger),
    sa.Column("tax_rate", sa.SmallInteger, nullable=False),
    sa.Column("category_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("offered", sa.Boolean, nullable=False),
    sa.Column("previous_unit_price", sa.BigInteger),
    sa.Column("availability", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("available_quantity", sa.BigInteger),
    sa.Column("created_at", _ts, nullable=False),
    sa.UniqueConstraint("cart_id", "sku"),
    sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    # Price events find the carts holding a SKU.
    sa.Index("ix_cart_lines_sku", "sku"),
)

promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("trigger", sa.SmallInteger, nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("code", sa.Text, unique=True),
    sa.Column("percent_off", sa.Integer, nullable=False, server_default="0"),
    sa.Column("amount_off", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("buy_quantity", sa.Integer, nullable=False, server_default="0"),
    sa.Column("get_quantity", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skus", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("product_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("category_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("minimum_subtotal", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("channels", pg.ARRAY(sa.SmallInteger), nullable=False, server_default="{}"),
    sa.Column("store_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("valid_from", _ts),
    sa.Column("valid_until", _ts),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("stop_further", sa.Boolean, nullable=False),
    sa.Column("usage_limit", sa.Integer, nullable=False, server_default="0"),
    sa.Column("usage_limit_per_customer", sa.Integer, nullable=False, server_default="0"),
    sa.Column("budget_amount", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("budget_redemptions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("budget_period", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
)

promotion_codes = sa.Table(
    "promotion_codes",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column(
        "promotion_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("promotions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("customer_id", sa.Text),
    sa.Column("skus", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("expires_at", _ts),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Index("ix_promotion_codes_customer_id", "customer_id"),
)

redemptions = sa.Table(
    "redemptions",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "promotion_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("promotions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("code", sa.Text),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("cart_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", sa.Text),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("expires_at", _ts, nullable=False),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Column("updated_at", _ts, nullable=False, server_default=_now),
    sa.UniqueConstraint("order_id", "promotion_id"),
    sa.Index("ix_redemptions_promotion_id", "promotion_id", "state"),
    sa.Index("ix_redemptions_code", "code"),
)

# Wrong promotion codes per caller, shared by every replica: one row per caller (the SHA-256
# of whom the limit counts against: no ids in clear), a fixed window from its first attempt.
# The abandonment sweep deletes rows whose window ended, so the table holds only callers
# of the last window.
code_attempts = sa.Table(
    "code_attempts",
    metadata,
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_started_at", _ts, nullable=False),
    sa.CheckConstraint("failures >= 0", name="failures_not_negative"),
    sa.Index("ix_code_attempts_window_started_at", "window_started_at"),
)
