"""store card: a stored-value balance, its append-only ledger and payment holds

The balance equals the ledger's sum, enforced as for loyalty points: a trigger refuses to
change or delete an entry's amount, and a deferred constraint trigger checks at commit, for
every card a transaction touched, that balance = sum(amount).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:36:49.201621
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_cards",
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= balance",
            name=op.f("ck_store_cards_reserved_within_balance"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_store_cards_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_store_cards")),
    )
    op.create_table(
        "store_card_entries",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), server_default="", nullable=False),
        sa.Column("reference", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_store_card_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["store_cards.customer_id"],
            name=op.f("fk_store_card_entries_customer_id_store_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_store_card_entries")),
        sa.UniqueConstraint("id", name=op.f("uq_store_card_entries_id")),
    )
    op.create_index(
        "ix_store_card_entries_customer",
        "store_card_entries",
        ["customer_id", sa.literal_column("seq DESC")],
        unique=False,
    )
    op.create_table(
        "store_card_holds",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_store_card_holds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["store_cards.customer_id"],
            name=op.f("fk_store_card_holds_customer_id_store_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_card_holds")),
    )
    op.create_index(
        op.f("ix_store_card_holds_customer_id"), "store_card_holds", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_store_card_holds_held",
        "store_card_holds",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 1"),
    )
    # One statement per execute: asyncpg prepares each.
    for statement in CARD_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_CARD_TRIGGERS:
        op.execute(statement)
    op.drop_index(
        "ix_store_card_holds_held",
        table_name="store_card_holds",
        postgresql_where=sa.text("state = 1"),
    )
    op.drop_index(op.f("ix_store_card_holds_customer_id"), table_name="store_card_holds")
    op.drop_table("store_card_holds")
    op.drop_index("ix_store_card_entries_customer", table_name="store_card_entries")
    op.drop_table("store_card_entries")
    op.drop_table("store_cards")


CARD_TRIGGERS = (
    """
CREATE FUNCTION store_card_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (
        SELECT 1 FROM store_cards WHERE customer_id = OLD.customer_id
    ) THEN
        RETURN OLD;  -- the card itself is being deleted (cascade)
    END IF;
    RAISE EXCEPTION 'store_card_entries is append-only' USING ERRCODE = 'check_violation';
END $$;
""",
    """
CREATE TRIGGER store_card_entries_append_only
    BEFORE UPDATE OR DELETE ON store_card_entries
    FOR EACH ROW EXECUTE FUNCTION store_card_entries_append_only();
""",
    """
CREATE FUNCTION store_card_balance_is_ledger_sum() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    card uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.customer_id ELSE NEW.customer_id END;
    stored bigint;
    summed bigint;
BEGIN
    SELECT balance INTO stored FROM store_cards WHERE customer_id = card;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount), 0) INTO summed FROM store_card_entries WHERE customer_id = card;
    IF stored <> summed THEN
        RAISE EXCEPTION 'store card balance % of % differs from its ledger sum %',
            stored, card, summed USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
""",
    """
CREATE CONSTRAINT TRIGGER store_card_entries_sum
    AFTER INSERT OR UPDATE OR DELETE ON store_card_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION store_card_balance_is_ledger_sum();
""",
    """
CREATE CONSTRAINT TRIGGER store_cards_sum
    AFTER INSERT OR UPDATE OF balance ON store_cards
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION store_card_balance_is_ledger_sum();
""",
)

DROP_CARD_TRIGGERS = (
    "DROP TRIGGER IF EXISTS store_cards_sum ON store_cards;",
    "DROP TRIGGER IF EXISTS store_card_entries_sum ON store_card_entries;",
    "DROP TRIGGER IF EXISTS store_card_entries_append_only ON store_card_entries;",
    "DROP FUNCTION IF EXISTS store_card_balance_is_ledger_sum();",
    "DROP FUNCTION IF EXISTS store_card_entries_append_only();",
)
