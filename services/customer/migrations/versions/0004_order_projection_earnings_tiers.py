"""order projection, earnings in their return window, tiers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:15:57.635694

Orders as the customer service learns them from the order service's events (segments,
tiers, the 360 view), the returns seen (one reversal per return id), and what each order
earns while its return window is open.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_orders",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("order_number", sa.Text(), server_default="", nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("total_yen", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("returned_yen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("returned_units", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancelled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total_yen >= 0", name=op.f("ck_customer_orders_total_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_orders_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_customer_orders")),
    )
    op.create_index(
        "ix_customer_orders_customer",
        "customer_orders",
        ["customer_id", sa.literal_column("placed_at DESC")],
        unique=False,
    )
    op.create_table(
        "order_returns",
        sa.Column("return_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("refund_yen", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_order_returns_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("return_id", name=op.f("pk_order_returns")),
    )
    op.create_index(op.f("ix_order_returns_order_id"), "order_returns", ["order_id"], unique=False)
    op.create_table(
        "loyalty_earnings",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("bonus_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reversed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("entry_id", sa.UUID(), nullable=True),
        sa.Column("entry_points", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "reversed >= 0 AND reversed <= points",
            name=op.f("ck_loyalty_earnings_reversed_within_points"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["loyalty_accounts.customer_id"],
            name=op.f("fk_loyalty_earnings_customer_id_loyalty_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_loyalty_earnings")),
    )
    op.create_index(
        op.f("ix_loyalty_earnings_customer_id"), "loyalty_earnings", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_loyalty_earnings_pending",
        "loyalty_earnings",
        ["available_at"],
        unique=False,
        postgresql_where=sa.text("state = 1"),
    )
    op.add_column(
        "loyalty_accounts",
        sa.Column("pending", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "loyalty_accounts", sa.Column("tier_keep_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "loyalty_accounts", sa.Column("tier_review_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "loyalty_accounts",
        sa.Column("twelve_month_spend", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_loyalty_accounts_tier_review", "loyalty_accounts", ["tier_review_at"], unique=False
    )
    op.create_check_constraint(
        op.f("ck_loyalty_accounts_pending_not_negative"), "loyalty_accounts", "pending >= 0"
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_loyalty_accounts_pending_not_negative"), "loyalty_accounts", type_="check"
    )
    op.drop_index("ix_loyalty_accounts_tier_review", table_name="loyalty_accounts")
    op.drop_column("loyalty_accounts", "twelve_month_spend")
    op.drop_column("loyalty_accounts", "tier_review_at")
    op.drop_column("loyalty_accounts", "tier_keep_until")
    op.drop_column("loyalty_accounts", "pending")
    op.drop_index(
        "ix_loyalty_earnings_pending",
        table_name="loyalty_earnings",
        postgresql_where=sa.text("state = 1"),
    )
    op.drop_index(op.f("ix_loyalty_earnings_customer_id"), table_name="loyalty_earnings")
    op.drop_table("loyalty_earnings")
    op.drop_index(op.f("ix_order_returns_order_id"), table_name="order_returns")
    op.drop_table("order_returns")
    op.drop_index("ix_customer_orders_customer", table_name="customer_orders")
    op.drop_table("customer_orders")
