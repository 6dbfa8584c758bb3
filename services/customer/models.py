"""Customer tables (SQLAlchemy 2 Core); migrations are generated from these.

Personal data lives in ``customers`` and ``addresses`` only (and, as hashes, in
``sign_in_attempts``); credentials are stored as hashes: argon2id for passwords, SHA-256 for
high-entropy secrets (refresh tokens, mailed tokens, client secrets, device codes)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.schema import SchemaItem

from tenpo.kit.db import service_metadata

metadata = service_metadata()

_now = sa.func.now()
_uuid = pg.UUID(as_uuid=True)
_time = sa.DateTime(timezone=True)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    # Nullable: erasure clears them; a unique index ignores NULLs, so the address is free
    # to register again.
    sa.Column("email", sa.Text),
    sa.Column("email_key", sa.Text, unique=True),
    sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("password_hash", sa.Text),
    sa.Column("family_name", sa.Text),
    sa.Column("given_name", sa.Text),
    sa.Column("family_name_kana", sa.Text),
    sa.Column("given_name_kana", sa.Text),
    sa.Column("phone_number", sa.Text, index=True),
    sa.Column("birthday", sa.Date),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("preferred_store_id", sa.Text),
    sa.Column("default_shipping_address_id", _uuid),
    sa.Column("default_billing_address_id", _uuid),
    sa.Column("state", sa.SmallInteger, nullable=False),
    # Folded names and readings (domain fold_for_search), trigram-indexed for staff search.
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _time, nullable=False, server_default=_now),
    sa.Column("updated_at", _time, nullable=False, server_default=_now),
    sa.Column("erased_at", _time),
    sa.Index(
        "ix_customers_search_text_trgm",
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    ),
    sa.Index("ix_customers_created", sa.text("created_at DESC"), "id"),
)

addresses = sa.Table(
    "addresses",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("label", sa.Text, nullable=False, server_default=""),
    sa.Column("region_code", sa.Text, nullable=False),
    sa.Column("postal_code", sa.Text, nullable=False),
    sa.Column("administrative_area", sa.Text, nullable=False),
    sa.Column("locality", sa.Text, nullable=False),
    sa.Column("address_lines", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("phone_number", sa.Text, nullable=False, server_default=""),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _time, nullable=False, server_default=_now),
    sa.Column("updated_at", _time, nullable=False, server_default=_now),
    sa.Index("ix_addresses_customer", "customer_id", "created_at", "id"),
)

consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    # Ledger order; identity so concurrent writers never collide.
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("purpose", sa.SmallInteger, nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("action", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("wording_version", sa.Text, nullable=False),
    sa.Column("source_channel", sa.SmallInteger, nullable=False),
    sa.Column("source_store_id", sa.Text),
    sa.Column("actor_kind", sa.Text, nullable=False),
    sa.Column("recorded_at", _time, nullable=False),
    sa.Index("ix_consent_events_customer_seq", "customer_id", "seq"),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("email_key", sa.Text, nullable=False, unique=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", _time, nullable=False, server_default=_now),
    sa.Column("disabled_at", _time),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    # Every token descending from one sign-in; reuse of a spent one revokes them all.
    sa.Column("family_id", _uuid, nullable=False, index=True),
    sa.Column("subject_kind", sa.SmallInteger, nullable=False),
    sa.Column("subject_id", _uuid, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("created_at", _time, nullable=False),
    sa.Column("expires_at", _time, nullable=False),
    sa.Column("used_at", _time),
    sa.Column("revoked_at", _time),
    sa.Index("ix_refresh_tokens_subject", "subject_kind", "subject_id"),
)

one_time_tokens = sa.Table(
    "one_time_tokens",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("purpose", sa.SmallInteger, nullable=False),
    sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
    # What the token confirms, e.g. the e-mail key being verified or the consent asked for.
    sa.Column("subject", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("created_at", _time, nullable=False),
    sa.Column("expires_at", _time, nullable=False),
    sa.Column("used_at", _time),
    sa.Index("ix_one_time_tokens_customer", "customer_id", "purpose"),
)

sign_in_attempts = sa.Table(
    "sign_in_attempts",
    metadata,
    # SHA-256 of "<kind>:<e-mail key>": known and unknown addresses are throttled alike, and
    # the table never holds an address.
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", _time),
    sa.Column("last_failure_at", _time),
    # Attempts admitted but not decided yet, and when the latest was admitted: the lock is
    # set by failures alone, and a count this old was left by a crashed process.
    sa.Column("in_flight", sa.Integer, nullable=False, server_default="0"),
    sa.Column("in_flight_at", _time),
)

password_reset_requests = sa.Table(
    "password_reset_requests",
    metadata,
    # Every reset request lands here alike, known address or not, and is turned into a mailed
    # token (or nothing) in the background: the answer's cost cannot tell whether the
    # address is registered. Rows live seconds; erasure deletes a customer's pending ones.
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email_key", sa.Text, nullable=False),
    sa.Column("requested_at", _time, nullable=False),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text, index=True),
    sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", _time, nullable=False, server_default=_now),
    sa.Column("revoked_at", _time),
)

device_sessions = sa.Table(
    "device_sessions",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column("client_id", sa.Text, sa.ForeignKey("clients.id"), nullable=False, index=True),
    sa.Column("device_code_hash", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("user_code", sa.Text, nullable=False, unique=True),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("created_at", _time, nullable=False),
    sa.Column("expires_at", _time, nullable=False),
    sa.Column("approved_by", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True),
    sa.Column("approved_at", _time),
    sa.Column("consumed_at", _time),
)

# ------------------------------------------------------------------------------ loyalty
# The balance equals the ledger's sum: every entry is inserted by one statement that also
# adds its points to the account row (store/ledger.py), and every change of an account
# first locks that row, so no two changes of one account interleave.


def _ledger_accounts(name: str, *more: SchemaItem) -> sa.Table:
    """The account row of an append-only ledger with holds (points, the store card): the
    balance (the entries' sum, checked by a deferred trigger) and what holds set aside."""
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "customer_id",
            _uuid,
            sa.ForeignKey("customers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", _time, nullable=False, server_default=_now),
        *more,
    )


def _ledger_entries(name: str, accounts: str, amount: str, *more: SchemaItem) -> sa.Table:
    """The append-only entries of a ledger (a trigger refuses to change their amounts),
    counted in the column ``amount``, newest first by ``seq``."""
    return sa.Table(
        name,
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("id", _uuid, nullable=False, unique=True),
        sa.Column(
            "customer_id",
            _uuid,
            sa.ForeignKey(f"{accounts}.customer_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column(amount, sa.BigInteger, nullable=False),
        sa.Column("channel", sa.SmallInteger, nullable=False),
        sa.Column("store_id", sa.Text),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("reference", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", _time, nullable=False),
        sa.CheckConstraint(f"{amount} <> 0", name=f"{amount}_not_zero"),
        sa.Index(f"ix_{name}_customer", "customer_id", sa.text("seq DESC")),
        *more,
    )


def _ledger_holds(name: str, accounts: str, amount: str) -> sa.Table:
    """Amounts set aside until committed (into an entry) or released; the sweep releases
    held ones past ``expires_at``."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", _uuid, primary_key=True),
        sa.Column(
            "customer_id",
            _uuid,
            sa.ForeignKey(f"{accounts}.customer_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(amount, sa.BigInteger, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("channel", sa.SmallInteger, nullable=False),
        sa.Column("store_id", sa.Text),
        sa.Column("entry_id", _uuid),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("expires_at", _time, nullable=False),
        sa.CheckConstraint(f"{amount} > 0", name=f"{amount}_positive"),
        sa.Index(f"ix_{name}_held", "expires_at", postgresql_where=sa.text("state = 1")),
    )


loyalty_accounts = _ledger_accounts(
    "loyalty_accounts",
    sa.Column("tier", sa.Text, nullable=False, server_default="STANDARD"),
    # Points of orders still in their return window (loyalty_earnings in state PENDING,
    # less what returns took): shown, not spendable, not part of the balance.
    sa.Column("pending", sa.BigInteger, nullable=False, server_default="0"),
    # The tier is kept until then even when the spend falls below it (grace period).
    sa.Column("tier_keep_until", _time),
    # When time alone may change the tier (an order leaving the twelve months, the grace
    # period ending): the sweep recomputes it then.
    sa.Column("tier_review_at", _time),
    sa.Column("twelve_month_spend", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    sa.CheckConstraint("pending >= 0", name="pending_not_negative"),
    sa.Index("ix_loyalty_accounts_tier_review", "tier_review_at"),
)

loyalty_entries = _ledger_entries(
    "loyalty_entries",
    "loyalty_accounts",
    "points",
    # Of a positive entry (a lot): points neither spent, expired nor reversed yet.
    sa.Column("remaining", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reverses", _uuid),
    sa.Column("expires_at", _time),
    sa.CheckConstraint("remaining >= 0 AND remaining <= greatest(points, 0)", name="remaining"),
    # The expiry sweep's and oldest-first spending's lots.
    sa.Index(
        "ix_loyalty_entries_open_lots",
        "expires_at",
        postgresql_where=sa.text("remaining > 0"),
    ),
    # A lot is reversed at most once.
    sa.Index("ux_loyalty_entries_reverses", "reverses", unique=True),
)

loyalty_reservations = _ledger_holds("loyalty_reservations", "loyalty_accounts", "points")

# ------------------------------------------------------------------------------ orders

# A projection of the order service's events: what segments, tiers and the 360 view need
# (no personal data: ids, channel, store, amounts).
customer_orders = sa.Table(
    "customer_orders",
    metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("order_number", sa.Text, nullable=False, server_default=""),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("total_yen", sa.BigInteger, nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("returned_yen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("returned_units", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("placed_at", _time, nullable=False),
    sa.CheckConstraint("total_yen >= 0", name="total_not_negative"),
    sa.Index("ix_customer_orders_customer", "customer_id", sa.text("placed_at DESC")),
)

# Returns seen, one row per return id: a redelivered or repeated return reverses once.
order_returns = sa.Table(
    "order_returns",
    metadata,
    sa.Column("return_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False, index=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("refund_yen", sa.BigInteger, nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("points_reversed", sa.BigInteger, nullable=False),
    sa.Column("received_at", _time, nullable=False),
)

# What an order earns: pending during the return window, then an EARN entry of the ledger.
loyalty_earnings = sa.Table(
    "loyalty_earnings",
    metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column(
        "customer_id",
        _uuid,
        sa.ForeignKey("loyalty_accounts.customer_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("state", sa.SmallInteger, nullable=False),
    # Everything the order earned (rules x tier, plus campaign bonuses) ...
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("bonus_points", sa.BigInteger, nullable=False, server_default="0"),
    # ... and how much of it returns and cancellation took back, pending or from the ledger.
    sa.Column("reversed", sa.BigInteger, nullable=False, server_default="0"),
    # The EARN entry once available, and its points (points - reversed at that moment).
    sa.Column("entry_id", _uuid),
    sa.Column("entry_points", sa.BigInteger),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("available_at", _time, nullable=False),
    sa.Column("created_at", _time, nullable=False),
    sa.CheckConstraint("reversed >= 0 AND reversed <= points", name="reversed_within_points"),
    sa.Index("ix_loyalty_earnings_pending", "available_at", postgresql_where=sa.text("state = 1")),
)

# ------------------------------------------------------------------------------ campaigns

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("start_at", _time, nullable=False),
    sa.Column("end_at", _time, nullable=False),
    sa.Column("audience", sa.SmallInteger, nullable=False),
    sa.Column("min_tier", sa.Text, nullable=False, server_default=""),
    sa.Column("lapsed_days", sa.Integer, nullable=False, server_default="0"),
    sa.Column("channels", pg.ARRAY(sa.SmallInteger), nullable=False, server_default="{}"),
    sa.Column("multiplier", sa.Float, nullable=False, server_default="1"),
    sa.Column("bonus_points", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("per_member_limit", sa.Integer, nullable=False, server_default="0"),
    sa.Column("budget_points", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("given_points", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", _time, nullable=False),
    # The budget holds in the database too: no statement can give more than it.
    sa.CheckConstraint("budget_points = 0 OR given_points <= budget_points", name="within_budget"),
    sa.Index("ix_campaigns_running", "end_at", "start_at"),
)

# What a campaign gave to which order: the per-member count and the export's participation.
campaign_awards = sa.Table(
    "campaign_awards",
    metadata,
    sa.Column(
        "campaign_id",
        _uuid,
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column(
        "customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("awarded_at", _time, nullable=False),
    # Given back to the budget by returns and cancellations; refunded in full, the award no
    # longer counts against the member's limit.
    sa.Column("refunded_points", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint(
        "refunded_points >= 0 AND refunded_points <= points", name="refund_within_award"
    ),
    sa.Index("ix_campaign_awards_member", "campaign_id", "customer_id"),
    sa.Index("ix_campaign_awards_customer", "customer_id"),
)

# ------------------------------------------------------------------------------ store card

# The prepaid card, like the points' account: every change locks this row first. The ledger
# sum is held by a deferred trigger as for points (migration 0006).
store_cards = _ledger_accounts(
    "store_cards",
    sa.CheckConstraint("reserved >= 0 AND reserved <= balance", name="reserved_within_balance"),
)

store_card_entries = _ledger_entries("store_card_entries", "store_cards", "amount")

store_card_holds = _ledger_holds("store_card_holds", "store_cards", "amount")

# ------------------------------------------------------------------------------ timeline

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    # NULL: an anonymous device interaction.
    sa.Column("customer_id", _uuid, sa.ForeignKey("customers.id", ondelete="CASCADE")),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("sku", sa.Text, nullable=False, server_default=""),
    sa.Column("size", sa.Text, nullable=False, server_default=""),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("store_id", sa.Text),
    sa.Column("device_id", sa.Text),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _time, nullable=False),
    # What a projected entry is about: an order, cart or message id (empty for devices).
    sa.Column("reference", sa.Text, nullable=False, server_default=""),
    # The RFID EPC of the item a shelf or mirror read (empty when it read none).
    sa.Column("item_tag", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_interactions_customer", "customer_id", sa.text("created_at DESC"), "id"),
    # A hand-off looks up the store's anonymous reads of the items she tried on.
    sa.Index(
        "ix_interactions_anonymous_item",
        "store_id",
        "item_tag",
        postgresql_where=sa.text("customer_id IS NULL AND item_tag <> ''"),
    ),
)

# ------------------------------------------------------------------------------ segments

# No foreign key to customers on purpose: an insert here would take a KEY SHARE lock on the
# customer row, and the loyalty sweep (which recomputes segments on the accounts it holds)
# would then wait for an order handler that holds the customer row and waits for the account:
# a deadlock. Customers are never deleted (erasure keeps the row), and erasure deletes these.
customer_segments = sa.Table(
    "customer_segments",
    metadata,
    sa.Column("customer_id", _uuid, primary_key=True),
    sa.Column("segment", sa.Text, primary_key=True),
    sa.Column("entered_at", _time, nullable=False),
    # ListSegmentMembers pages a segment by customer id.
    sa.Index("ix_customer_segments_segment", "segment", "customer_id"),
)

# One row per customer whose segments were computed: its lock serialises every recompute of
# that customer (order events, the loyalty sweep, the segment sweep), and ``review_at`` is
# when time alone may change her segments (lapsed, birthday month, the spend window).
segment_reviews = sa.Table(
    "segment_reviews",
    metadata,
    sa.Column("customer_id", _uuid, primary_key=True),
    sa.Column("review_at", _time),
    sa.Column("computed_at", _time, nullable=False),
    sa.Index(
        "ix_segment_reviews_due", "review_at", postgresql_where=sa.text("review_at IS NOT NULL")
    ),
)

# BirthdayReached announced, one row per customer and year: the primary key makes "once a
# year" hold with any number of sweeping replicas.
birthday_announcements = sa.Table(
    "birthday_announcements",
    metadata,
    sa.Column("customer_id", _uuid, primary_key=True),
    sa.Column("year", sa.SmallInteger, primary_key=True),
    sa.Column("announced_at", _time, nullable=False),
)

#: Tables holding rows about one customer, and the column naming them: what export covers.
CUSTOMER_TABLES: dict[str, sa.Column[object]] = {
    "customers": customers.c.id,
    "addresses": addresses.c.customer_id,
    "consent_events": consent_events.c.customer_id,
    "one_time_tokens": one_time_tokens.c.customer_id,
    "refresh_tokens": refresh_tokens.c.subject_id,
    "device_sessions": device_sessions.c.approved_by,
    "loyalty_accounts": loyalty_accounts.c.customer_id,
    "loyalty_entries": loyalty_entries.c.customer_id,
    "loyalty_reservations": loyalty_reservations.c.customer_id,
    "interactions": interactions.c.customer_id,
    "customer_orders": customer_orders.c.customer_id,
    "order_returns": order_returns.c.customer_id,
    "loyalty_earnings": loyalty_earnings.c.customer_id,
    "campaign_awards": campaign_awards.c.customer_id,
    "store_cards": store_cards.c.customer_id,
    "store_card_entries": store_card_entries.c.customer_id,
    "store_card_holds": store_card_holds.c.customer_id,
    "customer_segments": customer_segments.c.customer_id,
    "segment_reviews": segment_reviews.c.customer_id,
    "birthday_announcements": birthday_announcements.c.customer_id,
}
#: Columns never exported: credentials, even hashed.
SECRET_COLUMNS = frozenset({"password_hash", "token_hash", "secret_hash", "device_code_hash"})
