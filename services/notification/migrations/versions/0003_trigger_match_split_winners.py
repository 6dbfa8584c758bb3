"""journey trigger match, split members and decisions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column(
        "journeys",
        sa.Column("trigger_match", postgresql.JSONB(), server_default=_EMPTY, nullable=False),
    )
    op.create_table(
        "split_members",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("step_id", sa.Text(), nullable=False),
        sa.Column("journey_id", sa.UUID(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_split_members_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "step_id", name=op.f("pk_split_members")),
    )
    op.create_index(
        "ix_split_members_split", "split_members", ["journey_id", "step_id"], unique=False
    )
    op.create_table(
        "split_decisions",
        sa.Column("journey_id", sa.UUID(), nullable=False),
        sa.Column("step_id", sa.Text(), nullable=False),
        sa.Column("winner", sa.Text(), nullable=False),
        sa.Column("metric", sa.SmallInteger(), nullable=False),
        sa.Column("results", postgresql.JSONB(), nullable=False),
        sa.Column("z_score", sa.Float(), nullable=False),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_split_decisions_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("journey_id", "step_id", name=op.f("pk_split_decisions")),
    )


def downgrade() -> None:
    op.drop_table("split_decisions")
    op.drop_index("ix_split_members_split", table_name="split_members")
    op.drop_table("split_members")
    op.drop_column("journeys", "trigger_match")
