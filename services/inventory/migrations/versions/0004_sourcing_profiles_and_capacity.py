"""Sourcing profiles as versioned data; daily ship-from-store and same-day capacity

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:30:00.000000

The ``default`` profile gets its first version, active, saying what the built-in policy did
(``domain.profiles.BUILT_IN_RULES``), so plans are unchanged until someone activates
another version. The values are written out here rather than imported: a migration keeps
saying what it did when the code moves on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in (
        "ship_units_per_day",
        "ship_orders_per_day",
        "same_day_units_per_day",
        "same_day_orders_per_day",
    ):
        op.add_column(
            "locations", sa.Column(column, sa.Integer(), server_default="0", nullable=False)
        )
    op.add_column(
        "locations",
        sa.Column("same_day_radius_km", sa.Float(), server_default="0", nullable=False),
    )
    op.add_column(
        "reservation_lines",
        sa.Column("method", sa.SmallInteger(), server_default="0", nullable=False),
    )
    op.add_column("reservation_lines", sa.Column("capacity_kind", sa.SmallInteger()))
    op.add_column("reservation_lines", sa.Column("capacity_day", sa.Date()))
    op.create_table(
        "capacity_usage",
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("orders", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "units >= 0 AND orders >= 0", name=op.f("ck_capacity_usage_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_capacity_usage_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("location_id", "day", "kind", name=op.f("pk_capacity_usage")),
    )
    op.create_table(
        "sourcing_profiles",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sourcing_profiles")),
    )
    op.create_table(
        "sourcing_profile_versions",
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("criteria", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("max_shipments", sa.Integer(), nullable=False),
        sa.Column(
            "allowed_types",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("fallbacks", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("create_actor", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activate_actor", sa.Text(), server_default="", nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["profile"],
            ["sourcing_profiles.name"],
            name=op.f("fk_sourcing_profile_versions_profile_sourcing_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile", "version", name=op.f("pk_sourcing_profile_versions")),
    )
    op.create_index(
        "ux_sourcing_profile_versions_active",
        "sourcing_profile_versions",
        ["profile"],
        unique=True,
        postgresql_where=sa.text("state = 2"),
    )
    # The built-in policy as the default profile's first, active version: PICKUP_STORE_FIRST,
    # FEWEST_SHIPMENTS, DISTANCE, LOCATION_PRIORITY; at most 3 locations searched exactly;
    # every type for pickup (1), delivery (2) and same-day (3), DCs, FCs, stores in that
    # order; fallbacks SPLIT_BEYOND_MAX then PARTIAL.
    op.execute("INSERT INTO sourcing_profiles (name) VALUES ('default')")
    op.execute(
        """
        INSERT INTO sourcing_profile_versions
          (profile, version, state, description, criteria, max_shipments, allowed_types,
           fallbacks, create_actor, activate_actor, activated_at)
        VALUES ('default', 1, 2,
                'Built-in behaviour: pickup store first, fewest shipments, distance, priority.',
                '{1,2,3,4}', 3, '{"1": [1, 2, 3], "2": [1, 2, 3], "3": [1, 2, 3]}'::jsonb,
                '{1,3}', 'system:migration', 'system:migration', now())
        """
    )


def downgrade() -> None:
    op.drop_index(
        "ux_sourcing_profile_versions_active",
        table_name="sourcing_profile_versions",
        postgresql_where=sa.text("state = 2"),
    )
    op.drop_table("sourcing_profile_versions")
    op.drop_table("sourcing_profiles")
    op.drop_table("capacity_usage")
    op.drop_column("reservation_lines", "capacity_day")
    op.drop_column("reservation_lines", "capacity_kind")
    op.drop_column("reservation_lines", "method")
    for column in (
        "same_day_radius_km",
        "same_day_orders_per_day",
        "same_day_units_per_day",
        "ship_orders_per_day",
        "ship_units_per_day",
    ):
        op.drop_column("locations", column)
