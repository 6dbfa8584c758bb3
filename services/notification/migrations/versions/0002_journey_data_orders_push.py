"""journey run data, order projection, delivery status, push subscriptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column(
        "journey_runs",
        sa.Column("data", postgresql.JSONB(), server_default=_EMPTY, nullable=False),
    )
    op.add_column(
        "journey_runs",
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "messages", sa.Column("delivery_status", sa.Text(), server_default="", nullable=False)
    )
    op.add_column(
        "messages", sa.Column("delivery_updated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        op.f("ix_messages_provider_id"), "messages", ["channel", "provider_id"], unique=False
    )
    op.create_table(
        "customer_orders",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_orders")),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.Text(), nullable=False),
        sa.Column("auth", sa.Text(), nullable=False),
        sa.Column("device_label", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint(
            "customer_id", "endpoint", name=op.f("uq_push_subscriptions_customer_id_endpoint")
        ),
    )


def downgrade() -> None:
    op.drop_table("push_subscriptions")
    op.drop_table("customer_orders")
    op.drop_index("ix_messages_provider_id", table_name="messages")
    op.drop_column("messages", "delivery_updated_at")
    op.drop_column("messages", "delivery_status")
    op.drop_column("journey_runs", "attempts")
    op.drop_column("journey_runs", "data")
