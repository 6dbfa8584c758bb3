"""loyalty ledger and interaction timeline

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:35:30.814300

The ledger is append-only and the balance always equals its sum, enforced by PostgreSQL
itself: a trigger refuses to change or delete an entry's points, and a deferred constraint
trigger checks, at commit of any transaction that touched an account or its entries, that
the account's balance equals the sum of its entries (one indexed sum per touched account).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=True),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("sku", sa.Text(), server_default="", nullable=False),
        sa.Column("size", sa.Text(), server_default="", nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_interactions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
    )
    op.create_index(
        "ix_interactions_customer",
        "interactions",
        ["customer_id", sa.literal_column("created_at DESC"), "id"],
        unique=False,
    )
    op.create_table(
        "loyalty_accounts",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tier", sa.Text(), server_default="STANDARD", nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_loyalty_accounts_reserved_not_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_loyalty_accounts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_loyalty_accounts")),
    )
    op.create_table(
        "loyalty_entries",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), server_default="", nullable=False),
        sa.Column("reference", sa.Text(), server_default="", nullable=False),
        sa.Column("reverses", sa.UUID(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points <> 0", name=op.f("ck_loyalty_entries_points_not_zero")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= greatest(points, 0)",
            name=op.f("ck_loyalty_entries_remaining"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["loyalty_accounts.customer_id"],
            name=op.f("fk_loyalty_entries_customer_id_loyalty_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_loyalty_entries")),
        sa.UniqueConstraint("id", name=op.f("uq_loyalty_entries_id")),
    )
    op.create_index(
        "ix_loyalty_entries_customer",
        "loyalty_entries",
        ["customer_id", sa.literal_column("seq DESC")],
        unique=False,
    )
    op.create_index(
        "ix_loyalty_entries_open_lots",
        "loyalty_entries",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index("ux_loyalty_entries_reverses", "loyalty_entries", ["reverses"], unique=True)
    op.create_table(
        "loyalty_reservations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_loyalty_reservations_points_positive")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["loyalty_accounts.customer_id"],
            name=op.f("fk_loyalty_reservations_customer_id_loyalty_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_reservations")),
    )
    op.create_index(
        op.f("ix_loyalty_reservations_customer_id"),
        "loyalty_reservations",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        "ix_loyalty_reservations_held",
        "loyalty_reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 1"),
    )
    # One statement per execute: asyncpg prepares each.
    for statement in LEDGER_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_LEDGER_TRIGGERS:
        op.execute(statement)
    op.drop_index(
        "ix_loyalty_reservations_held",
        table_name="loyalty_reservations",
        postgresql_where=sa.text("state = 1"),
    )
    op.drop_index(op.f("ix_loyalty_reservations_customer_id"), table_name="loyalty_reservations")
    op.drop_table("loyalty_reservations")
    op.drop_index("ux_loyalty_entries_reverses", table_name="loyalty_entries")
    op.drop_index(
        "ix_loyalty_entries_open_lots",
        table_name="loyalty_entries",
        postgresql_where=sa.text("remaining > 0"),
    )
    op.drop_index("ix_loyalty_entries_customer", table_name="loyalty_entries")
    op.drop_table("loyalty_entries")
    op.drop_table("loyalty_accounts")
    op.drop_index("ix_interactions_customer", table_name="interactions")
    op.drop_table("interactions")


LEDGER_TRIGGERS = (
    """
CREATE FUNCTION loyalty_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (
        SELECT 1 FROM loyalty_accounts WHERE customer_id = OLD.customer_id
    ) THEN
        RETURN OLD;  -- the account itself is being deleted (cascade)
    END IF;
    IF TG_OP = 'DELETE' OR NEW.points <> OLD.points OR NEW.kind <> OLD.kind
       OR NEW.customer_id <> OLD.customer_id THEN
        RAISE EXCEPTION 'loyalty_entries is append-only' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
""",
    """
CREATE TRIGGER loyalty_entries_append_only
    BEFORE UPDATE OR DELETE ON loyalty_entries
    FOR EACH ROW EXECUTE FUNCTION loyalty_entries_append_only();
""",
    """
CREATE FUNCTION loyalty_balance_is_ledger_sum() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.customer_id ELSE NEW.customer_id END;
    stored bigint;
    summed bigint;
BEGIN
    SELECT balance INTO stored FROM loyalty_accounts WHERE customer_id = account;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(points), 0) INTO summed FROM loyalty_entries WHERE customer_id = account;
    IF stored <> summed THEN
        RAISE EXCEPTION 'loyalty balance % of % differs from its ledger sum %',
            stored, account, summed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
""",
    """
CREATE CONSTRAINT TRIGGER loyalty_entries_sum
    AFTER INSERT OR UPDATE OR DELETE ON loyalty_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION loyalty_balance_is_ledger_sum();
""",
    """
CREATE CONSTRAINT TRIGGER loyalty_accounts_sum
    AFTER INSERT OR UPDATE OF balance ON loyalty_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION loyalty_balance_is_ledger_sum();
""",
)

DROP_LEDGER_TRIGGERS = (
    "DROP TRIGGER IF EXISTS loyalty_accounts_sum ON loyalty_accounts;",
    "DROP TRIGGER IF EXISTS loyalty_entries_sum ON loyalty_entries;",
    "DROP TRIGGER IF EXISTS loyalty_entries_append_only ON loyalty_entries;",
    "DROP FUNCTION IF EXISTS loyalty_balance_is_ledger_sum();",
    "DROP FUNCTION IF EXISTS loyalty_entries_append_only();",
)
