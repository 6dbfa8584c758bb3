"""pickup codes no longer stored in plain text: a nonce they are derived from with the
service's key, and their keyed digest; codes issued before are kept aside
(legacy_pickup_code) until the service, which holds the key, replaces each with its digest
at start (the key is not the migration's to know)

Revision ID: 0005_pickup_code_digests
Revises: 0004_failure_metadata
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_pickup_code_digests"
down_revision: str | None = "0004_failure_metadata"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("fulfillments", "pickup_code", new_column_name="legacy_pickup_code")
    op.add_column("fulfillments", sa.Column("pickup_nonce", sa.Text(), nullable=True))
    op.add_column("fulfillments", sa.Column("pickup_code_digest", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_fulfillments_legacy_codes",
        "fulfillments",
        ["id"],
        unique=False,
        postgresql_where=sa.text("legacy_pickup_code IS NOT NULL"),
    )


def downgrade() -> None:
    # Codes issued since the upgrade exist only as digests: such pickups lose their code
    # (staff hand them over after checking the customer otherwise).
    op.drop_index(
        "ix_fulfillments_legacy_codes",
        table_name="fulfillments",
        postgresql_where=sa.text("legacy_pickup_code IS NOT NULL"),
    )
    op.drop_column("fulfillments", "pickup_code_digest")
    op.drop_column("fulfillments", "pickup_nonce")
    op.alter_column("fulfillments", "legacy_pickup_code", new_column_name="pickup_code")
