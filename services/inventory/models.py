"""Inventory tables (SQLAlchemy 2 Core, typed columns); migrations are generated from these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import service_metadata

metadata = service_metadata()

_now = sa.func.now()

locations = sa.Table(
    "locations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("address", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("time_zone", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("capabilities", pg.ARRAY(sa.SmallInteger), nullable=False),
    sa.Column("low_stock_threshold", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    # Daily capacities (0: no limit) and the same-day radius (0: the default).
    sa.Column("ship_units_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ship_orders_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("same_day_units_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("same_day_orders_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("same_day_radius_km", sa.Float, nullable=False, server_default="0"),
)

# What of a location's daily capacity (kind: Capability SHIP_FROM_STORE or
# SAME_DAY_DELIVERY) its reservations use on a local day. Only locations with a limit are
# counted; a reservation line that counted records the kind and day, so that releasing or
# expiring it gives the capacity back.
capacity_usage = sa.Table(
    "capacity_usage",
    metadata,
    sa.Column(
        "location_id",
        sa.Text,
        sa.ForeignKey("locations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("kind", sa.SmallInteger, primary_key=True),
    sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("orders", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("units >= 0 AND orders >= 0", name="not_negative"),
)

# Sourcing profiles: one row per profile (locked to number and activate its versions).
sourcing_profiles = sa.Table(
    "sourcing_profiles",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# Their versions: DRAFT (1) → ACTIVE (2) → RETIRED (3); at most one ACTIVE per profile.
sourcing_profile_versions = sa.Table(
    "sourcing_profile_versions",
    metadata,
    sa.Column(
        "profile",
        sa.Text,
        sa.ForeignKey("sourcing_profiles.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("criteria", pg.ARRAY(sa.SmallInteger), nullable=False),
    sa.Column("max_shipments", sa.Integer, nullable=False),
    # {"<FulfillmentMethod value>": [LocationType values, preferred first]}
    sa.Column("allowed_types", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("fallbacks", pg.ARRAY(sa.SmallInteger), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("create_actor", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("activate_actor", sa.Text, nullable=False, server_default=""),
    sa.Column("activated_at", sa.DateTime(timezone=True)),
    sa.Column("retired_at", sa.DateTime(timezone=True)),
    sa.Index(
        "ux_sourcing_profile_versions_active",
        "profile",
        unique=True,
        postgresql_where=sa.text("state = 2"),
    ),
)

# The SKUs the catalog knows (a projection of its events): stock for others is refused.
known_skus = sa.Table(
    "known_skus",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("product_id", sa.Text, nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

stock_levels = sa.Table(
    "stock_levels",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column(
        "location_id",
        sa.Text,
        sa.ForeignKey("locations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("safety_stock", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("in_transit", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    # The domain enforces these; the database refuses a bug that slips past it.
    sa.CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
    sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
    sa.CheckConstraint("safety_stock >= 0", name="safety_stock_not_negative"),
    sa.CheckConstraint("in_transit >= 0", name="in_transit_not_negative"),
    sa.Index("ix_stock_levels_location_sku", "location_id", "sku"),
)

# Append-only: the sum of a level's movements is its on_hand.
movements = sa.Table(
    "movements",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.SmallInteger, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reference", sa.Text, nullable=False, server_default=""),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("on_hand_after", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_movements_sku_location_seq", "sku", "location_id", "seq"),
    sa.Index("ix_movements_location_seq", "location_id", "seq"),
)

# ReserveStock's request_ids live in the kit's idempotency_keys (scope "ReserveStock"),
# claimed in the statement that inserts the reservation.
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("owner", sa.Text, nullable=False, index=True),
    sa.Column("customer_id", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Index(
        "ix_reservations_active_expiry",
        "expires_at",
        postgresql_where=sa.text("state = 1"),
    ),
    # A customer's active holds are counted on every reservation it makes (the cap).
    sa.Index(
        "ix_reservations_customer_active",
        "customer_id",
        postgresql_where=sa.text("state = 1 AND customer_id <> ''"),
    ),
)

reservation_lines = sa.Table(
    "reservation_lines",
    metadata,
    sa.Column(
        "reservation_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("reservations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("line_no", sa.SmallInteger, primary_key=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    # AllocationMethod (0: not said), and the daily capacity the line counted against.
    sa.Column("method", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("capacity_kind", sa.SmallInteger),
    sa.Column("capacity_day", sa.Date),
    sa.Index("ix_reservation_lines_sku_location", "sku", "location_id"),
)

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("from_location_id", sa.Text, nullable=False),
    sa.Column("to_location_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)

# Service-wide switches kept in the database, e.g. demo stocking (set by `seed`).
flags = sa.Table(
    "flags",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", pg.JSONB, nullable=False),
)
