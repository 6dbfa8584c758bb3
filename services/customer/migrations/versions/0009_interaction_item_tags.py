"""interactions keep the RFID tag (EPC) of the item a shelf or mirror read

A hand-off at a mirror makes the store's latest anonymous shelf read of each item she tried
on hers too (the same physical pair); the partial index finds those reads.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 16:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "interactions", sa.Column("item_tag", sa.Text(), server_default="", nullable=False)
    )
    op.create_index(
        "ix_interactions_anonymous_item",
        "interactions",
        ["store_id", "item_tag"],
        postgresql_where=sa.text("customer_id IS NULL AND item_tag <> ''"),
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_anonymous_item", table_name="interactions")
    op.drop_column("interactions", "item_tag")
