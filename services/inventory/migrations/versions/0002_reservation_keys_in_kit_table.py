"""ReserveStock's idempotency keys move to the kit's idempotency_keys table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:00:00.000000

Reservations kept their own request_id/request_hash columns, a second idempotency path next
to the kit's. ReserveStock now claims its keys in the kit's table (in the same statement
that writes the reservation), so the old columns go. Keys stored in them are not carried
over: they were not bound to the caller, and a retry of a request older than this
migration is long past any client's retry window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_reservations_request_id"), "reservations", type_="unique")
    op.drop_column("reservations", "request_hash")
    op.drop_column("reservations", "request_id")


def downgrade() -> None:
    op.add_column("reservations", sa.Column("request_id", sa.Text(), nullable=True))
    op.add_column("reservations", sa.Column("request_hash", sa.LargeBinary(), nullable=True))
    op.create_unique_constraint(op.f("uq_reservations_request_id"), "reservations", ["request_id"])
