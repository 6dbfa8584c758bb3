"""An index for counting a customer's active reservations (the active-holds cap)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_reservations_customer_active",
        "reservations",
        ["customer_id"],
        unique=False,
        postgresql_where=sa.text("state = 1 AND customer_id <> ''"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_reservations_customer_active",
        table_name="reservations",
        postgresql_where=sa.text("state = 1 AND customer_id <> ''"),
    )
