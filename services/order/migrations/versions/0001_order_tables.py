"""order tables

Revision ID: 0001
Revises:
Create Date: 2026-11-30 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from tenpo.kit.migrations import create_kit_tables, drop_kit_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("order_numbers", start=1)))
    op.create_table(
        "orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("cart_id", sa.Text(), nullable=False),
        sa.Column("cart_etag", sa.Text(), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("payment_method", sa.SmallInteger(), nullable=False),
        sa.Column("payment_state", sa.SmallInteger(), nullable=False),
        sa.Column("card_token", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("failure_kind", sa.Text(), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("channel", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), server_default="JPY", nullable=False),
        sa.Column(
            "lines",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("fulfillment", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "totals",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "refs",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("saga_step", sa.SmallInteger(), nullable=False),
        sa.Column("saga_phase", sa.Text(), nullable=False),
        sa.Column("saga_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("number", name=op.f("uq_orders_number")),
        sa.UniqueConstraint("request_key", name=op.f("uq_orders_request_key")),
    )
    op.create_index(
        "ix_orders_customer",
        "orders",
        ["customer_id", sa.text("created_at DESC"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_orders_open_sagas",
        "orders",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("saga_phase <> 'done'"),
    )
    op.create_table(
        "sandbox_payments",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("authorization_key", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.Text(), server_default="JPY", nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sandbox_payments")),
    )
    # The kit's tables (outbox, inbox, idempotency keys), as the kit defines them.
    create_kit_tables()


def downgrade() -> None:
    drop_kit_tables()
    op.drop_table("sandbox_payments")
    op.drop_index(
        "ix_orders_open_sagas",
        table_name="orders",
        postgresql_where=sa.text("saga_phase <> 'done'"),
    )
    op.drop_index("ix_orders_customer", table_name="orders")
    op.drop_table("orders")
    op.execute(sa.schema.DropSequence(sa.Sequence("order_numbers")))
