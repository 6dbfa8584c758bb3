"""failed checkouts are deleted after ORDER_FAILED_RETENTION_HOURS: an index finds them by
when they failed

Revision ID: 0007_failed_orders_index
Revises: 0006_return_authorizations
Create Date: 2026-11-30 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_failed_orders_index"
down_revision: str | None = "0006_return_authorizations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_failed",
        "orders",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 5"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_failed", table_name="orders", postgresql_where=sa.text("status = 5"))
