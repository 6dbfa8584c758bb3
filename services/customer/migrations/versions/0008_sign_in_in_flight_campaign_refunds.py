"""sign-in attempts in flight; campaign awards given back by returns and cancellations

``sign_in_attempts.in_flight`` counts attempts admitted but not yet decided, so the lock is
set by failures only (concurrent correct sign-ins never lock) while parallel guesses still
cannot pass it. ``campaign_awards.refunded_points`` is what returns and cancellations gave
back to the campaign's budget; an award refunded in full no longer counts as a use.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sign_in_attempts",
        sa.Column("in_flight", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "sign_in_attempts", sa.Column("in_flight_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "campaign_awards",
        sa.Column("refunded_points", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_campaign_awards_refund_within_award"),
        "campaign_awards",
        "refunded_points >= 0 AND refunded_points <= points",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_campaign_awards_refund_within_award"), "campaign_awards", type_="check"
    )
    op.drop_column("campaign_awards", "refunded_points")
    op.drop_column("sign_in_attempts", "in_flight_at")
    op.drop_column("sign_in_attempts", "in_flight")
