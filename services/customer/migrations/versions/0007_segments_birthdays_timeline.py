"""segments, birthday announcements, timeline references

Computed segment memberships and their review times (no foreign key to customers: see
models.py, a KEY SHARE lock there would let the loyalty sweep deadlock with an order
handler), one row per BirthdayReached announced (customer, year), and the reference (order,
cart or message id) of timeline entries projected from other services' events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:19:40.176082
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "birthday_announcements",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "year", name=op.f("pk_birthday_announcements")),
    )
    op.create_table(
        "customer_segments",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("segment", sa.Text(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "segment", name=op.f("pk_customer_segments")),
    )
    op.create_index(
        "ix_customer_segments_segment",
        "customer_segments",
        ["segment", "customer_id"],
        unique=False,
    )
    op.create_table(
        "segment_reviews",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("review_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_segment_reviews")),
    )
    op.create_index(
        "ix_segment_reviews_due",
        "segment_reviews",
        ["review_at"],
        unique=False,
        postgresql_where=sa.text("review_at IS NOT NULL"),
    )
    op.add_column(
        "interactions", sa.Column("reference", sa.Text(), server_default="", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("interactions", "reference")
    op.drop_index(
        "ix_segment_reviews_due",
        table_name="segment_reviews",
        postgresql_where=sa.text("review_at IS NOT NULL"),
    )
    op.drop_table("segment_reviews")
    op.drop_index("ix_customer_segments_segment", table_name="customer_segments")
    op.drop_table("customer_segments")
    op.drop_table("birthday_announcements")
