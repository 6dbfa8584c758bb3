"""campaigns: staff-defined, applied when orders earn; awards per order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:30:46.512104
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audience", sa.SmallInteger(), nullable=False),
        sa.Column("min_tier", sa.Text(), server_default="", nullable=False),
        sa.Column("lapsed_days", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "channels", postgresql.ARRAY(sa.SmallInteger()), server_default="{}", nullable=False
        ),
        sa.Column("multiplier", sa.Float(), server_default="1", nullable=False),
        sa.Column("bonus_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("per_member_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("budget_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("given_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "budget_points = 0 OR given_points <= budget_points",
            name=op.f("ck_campaigns_within_budget"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index("ix_campaigns_running", "campaigns", ["end_at", "start_at"], unique=False)
    op.create_table(
        "campaign_awards",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("awarded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_awards_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_campaign_awards_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "order_id", name=op.f("pk_campaign_awards")),
    )
    op.create_index("ix_campaign_awards_customer", "campaign_awards", ["customer_id"], unique=False)
    op.create_index(
        "ix_campaign_awards_member", "campaign_awards", ["campaign_id", "customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_awards_member", table_name="campaign_awards")
    op.drop_index("ix_campaign_awards_customer", table_name="campaign_awards")
    op.drop_table("campaign_awards")
    op.drop_index("ix_campaigns_running", table_name="campaigns")
    op.drop_table("campaigns")
