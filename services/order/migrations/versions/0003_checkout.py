"""checkout: one running saga per cart, the sandbox konbini ledger, contact data for
staff search (pseudonymized on erasure)

Revision ID: 0003_checkout
Revises: 0002
Create Date: 2026-11-30 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_checkout"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("contact_email", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("contact_phone", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_orders_contact_email", "orders", ["contact_email"], unique=False)
    op.create_index("ix_orders_contact_phone", "orders", ["contact_phone"], unique=False)
    op.create_table(
        "konbini_payments",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), server_default="JPY", nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_konbini_payments")),
        sa.UniqueConstraint("number", name=op.f("uq_konbini_payments_number")),
    )
    op.create_index(
        "ux_orders_cart_open_saga",
        "orders",
        ["cart_id"],
        unique=True,
        postgresql_where=sa.text("saga_phase <> 'done'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_contact_phone", table_name="orders")
    op.drop_index("ix_orders_contact_email", table_name="orders")
    op.drop_column("orders", "erased_at")
    op.drop_column("orders", "contact_phone")
    op.drop_column("orders", "contact_email")
    op.drop_table("konbini_payments")
    op.drop_index(
        "ux_orders_cart_open_saga",
        table_name="orders",
        postgresql_where=sa.text("saga_phase <> 'done'"),
    )
