"""fulfillments and returns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fulfillments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("capture_state", sa.SmallInteger(), nullable=False),
        sa.Column("due_at", _ts, nullable=False),
        sa.Column("window_start", _ts, nullable=True),
        sa.Column("window_end", _ts, nullable=True),
        sa.Column("pickup_code", sa.Text(), nullable=True),
        sa.Column("hold_until", _ts, nullable=True),
        sa.Column("ready_at", _ts, nullable=True),
        sa.Column("carrier", sa.Text(), server_default="", nullable=False),
        sa.Column("tracking_number", sa.Text(), server_default="", nullable=False),
        sa.Column("shipped_at", _ts, nullable=True),
        sa.Column("cancel_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("code_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("code_locked_until", _ts, nullable=True),
        sa.Column("action_at", _ts, nullable=True),
        sa.Column("created_at", _ts, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", _ts, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fulfillments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfillments")),
        sa.UniqueConstraint("number", name=op.f("uq_fulfillments_number")),
    )
    op.create_index("ix_fulfillments_order", "fulfillments", ["order_id"])
    op.create_index("ix_fulfillments_store_due", "fulfillments", ["store_id", "due_at"])
    op.create_index(
        "ix_fulfillments_action",
        "fulfillments",
        ["action_at"],
        postgresql_where=sa.text("action_at IS NOT NULL"),
    )

    op.create_table(
        "order_returns",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("refund", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", _ts, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_returns_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_returns")),
        sa.UniqueConstraint("request_key", name=op.f("uq_order_returns_request_key")),
    )
    op.create_index("ix_order_returns_order", "order_returns", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_returns")
    op.drop_table("fulfillments")
