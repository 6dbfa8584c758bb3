"""code attempts: wrong promotion codes counted in the database, shared by every replica

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "code_attempts",
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_code_attempts_failures_not_negative")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_code_attempts")),
    )
    op.create_index(
        "ix_code_attempts_window_started_at",
        "code_attempts",
        ["window_started_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_code_attempts_window_started_at", table_name="code_attempts")
    op.drop_table("code_attempts")
