"""failure metadata: a failed checkout's answer keeps its ErrorInfo metadata (the location
whose daily capacity was used up), so a retried request_id hears the same

Revision ID: 0004_failure_metadata
Revises: 0003_checkout
Create Date: 2026-11-30 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_failure_metadata"
down_revision: str | None = "0003_checkout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("failure_metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("orders", "failure_metadata")
