"""returns by mail: return authorizations (RMA) with their numbers; a return records the
authorization it received

Revision ID: 0006_return_authorizations
Revises: 0005_pickup_code_digests
Create Date: 2026-11-30 16:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0006_return_authorizations"
down_revision: str | None = "0005_pickup_code_digests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("return_authorization_numbers", start=1)))
    op.create_table(
        "return_authorizations",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("lines", pg.JSONB(), nullable=False),
        sa.Column("ship_to", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt_request_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_return_authorizations_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_authorizations")),
        sa.UniqueConstraint("number", name=op.f("uq_return_authorizations_number")),
        sa.UniqueConstraint("request_key", name=op.f("uq_return_authorizations_request_key")),
    )
    op.create_index(
        "ix_return_authorizations_order", "return_authorizations", ["order_id"], unique=False
    )
    op.add_column(
        "order_returns", sa.Column("authorization_id", pg.UUID(as_uuid=True), nullable=True)
    )
    op.create_unique_constraint(
        op.f("uq_order_returns_authorization_id"), "order_returns", ["authorization_id"]
    )
    op.create_foreign_key(
        op.f("fk_order_returns_authorization_id_return_authorizations"),
        "order_returns",
        "return_authorizations",
        ["authorization_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_column("order_returns", "authorization_id")
    op.drop_index("ix_return_authorizations_order", table_name="return_authorizations")
    op.drop_table("return_authorizations")
    op.execute(sa.schema.DropSequence(sa.Sequence("return_authorization_numbers")))
