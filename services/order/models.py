"""Order tables (SQLAlchemy 2 Core, typed columns); migrations are generated from these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import service_metadata

metadata = service_metadata()

_now = sa.func.now()
_ts = sa.DateTime(timezone=True)

#: Human-friendly order numbers; a sequence never hands out a number twice.
order_numbers = sa.Sequence("order_numbers", metadata=metadata, start=1)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("cart_id", sa.Text, nullable=False),
    sa.Column("cart_etag", sa.Text, nullable=False),
    # The PlaceOrder idempotency key (caller + request_id) and the request's fingerprint:
    # one order per key, a reused key with other parameters is refused.
    sa.Column("request_key", sa.Text, nullable=False, unique=True),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("payment_method", sa.SmallInteger, nullable=False),
    sa.Column("payment_state", sa.SmallInteger, nullable=False),
    # The card token is kept only while the saga may still authorize (cleared after).
    sa.Column("card_token", sa.Text),
    sa.Column("failure_reason", sa.Text, nullable=False, server_default=""),
    # How a failed checkout was answered (FailureKind + message), so that a retried
    # request_id gets the same answer.
    sa.Column("failure_kind", sa.Text),
    sa.Column("failure_message", sa.Text),
    # The failure's ErrorInfo metadata (e.g. the location whose capacity was used up).
    sa.Column("failure_metadata", pg.JSONB),
    sa.Column("channel", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("store_id", sa.Text),
    sa.Column("currency", sa.Text, nullable=False, server_default="JPY"),
    sa.Column("lines", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("fulfillment", pg.JSONB),
    sa.Column("totals", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # Provider references (reservation id, authorization id).
    sa.Column("refs", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # The saga: the step begun (or next), the direction, and who runs it until when.
    sa.Column("saga_step", sa.SmallInteger, nullable=False),
    sa.Column("saga_phase", sa.Text, nullable=False),
    sa.Column("saga_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", _ts),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Column("updated_at", _ts, nullable=False, server_default=_now),
    # Personal data for service and staff search (lower-case e-mail, phone digits), gone
    # when the customer is erased (erased_at): the accounting record stays.
    sa.Column("contact_email", sa.Text),
    sa.Column("contact_phone", sa.Text),
    sa.Column("erased_at", _ts),
    sa.Index("ix_orders_contact_email", "contact_email"),
    sa.Index("ix_orders_contact_phone", "contact_phone"),
    # A customer's orders, newest first.
    sa.Index("ix_orders_customer", "customer_id", sa.text("created_at DESC"), "id"),
    # The sweeper looks only at sagas not done.
    sa.Index(
        "ix_orders_open_sagas", "lease_until", postgresql_where=sa.text("saga_phase <> 'done'")
    ),
    # The retention sweep finds failed checkouts by when they failed (usecases.retention).
    sa.Index("ix_orders_failed", "updated_at", postgresql_where=sa.text("status = 5")),
    # One running checkout per cart: a second PlaceOrder of a cart (another request_id, a
    # double click on two devices) is refused while the first saga runs, so that doomed
    # duplicates never hold stock another customer could have had.
    sa.Index(
        "ux_orders_cart_open_saga",
        "cart_id",
        unique=True,
        postgresql_where=sa.text("saga_phase <> 'done'"),
    ),
)

#: The sandbox payment provider's own ledger (it plays an external PSP: its state outlives
#: an order-service crash, like a real provider's would). Keyed by idempotency key.
sandbox_payments = sa.Table(
    "sandbox_payments",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("authorization_key", sa.Text),
    sa.Column("amount", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("currency", sa.Text, nullable=False, server_default="JPY"),
    # approved / declined:<reason>
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
)

#: One fulfilment per source location of a placed order's plan (domain.fulfilments).
fulfillments = sa.Table(
    "fulfillments",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("location_id", sa.Text, nullable=False),
    sa.Column("store_id", sa.Text, nullable=False),
    sa.Column("lines", pg.JSONB, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("capture_state", sa.SmallInteger, nullable=False),
    sa.Column("due_at", _ts, nullable=False),
    sa.Column("window_start", _ts),
    sa.Column("window_end", _ts),
    # The pickup code is never stored: a nonce it is derived from with the service's key
    # (shown to the order's customer only), and its keyed digest, compared in constant time.
    sa.Column("pickup_nonce", sa.Text),
    sa.Column("pickup_code_digest", sa.LargeBinary),
    # Codes issued in plain text before 0005: replaced by their digests when the service
    # starts (usecases.fulfilments.rekey_legacy_codes); the column goes in a later release.
    sa.Column("legacy_pickup_code", sa.Text),
    sa.Column("hold_until", _ts),
    sa.Column("ready_at", _ts),
    sa.Column("carrier", sa.Text, nullable=False, server_default=""),
    sa.Column("tracking_number", sa.Text, nullable=False, server_default=""),
    sa.Column("shipped_at", _ts),
    sa.Column("cancel_reason", sa.Text, nullable=False, server_default=""),
    # Wrong pickup codes in a row, and until when codes are refused after too many.
    sa.Column("code_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("code_locked_until", _ts),
    # The sweeper's work: when this fulfilment next needs it (a capture owed, a pickup hold
    # running out) and, while a sweeper works on it, its lease (the same column, pushed
    # forward when claimed: a dead sweeper's claim runs out and another takes it).
    sa.Column("action_at", _ts),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Column("updated_at", _ts, nullable=False, server_default=_now),
    sa.Index("ix_fulfillments_order", "order_id"),
    # Start-up finds the plain-text codes left to rekey without reading the whole table.
    sa.Index(
        "ix_fulfillments_legacy_codes",
        "id",
        postgresql_where=sa.text("legacy_pickup_code IS NOT NULL"),
    ),
    # A store's open fulfilments by due time.
    sa.Index("ix_fulfillments_store_due", "store_id", "due_at"),
    sa.Index(
        "ix_fulfillments_action", "action_at", postgresql_where=sa.text("action_at IS NOT NULL")
    ),
)

#: Units of an order brought back to a store (domain.returns): recorded first, keyed by the
#: caller's request_id, so a retry never refunds twice; restock and refund follow.
order_returns = sa.Table(
    "order_returns",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("request_key", sa.Text, nullable=False, unique=True),
    sa.Column("store_id", sa.Text, nullable=False),
    sa.Column("lines", pg.JSONB, nullable=False),
    sa.Column("refund", sa.BigInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    # The return authorization this return received (a return by mail); one receipt each.
    sa.Column(
        "authorization_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("return_authorizations.id"),
        unique=True,
    ),
    sa.Index("ix_order_returns_order", "order_id"),
)

#: Human-friendly return authorization numbers (R-000123), never reused.
return_authorization_numbers = sa.Sequence(
    "return_authorization_numbers", metadata=metadata, start=1
)

#: Returns by mail: units a customer was authorized to send back, where to and until when.
#: Its units count as taken (no second request, no store return of them) while REQUESTED
#: and not expired; the receipt records an order_returns row (the one restock and refund
#: path), and the authorization follows it to REFUNDED in the same transaction.
return_authorizations = sa.Table(
    "return_authorizations",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("order_id", pg.UUID(as_uuid=True), sa.ForeignKey("orders.id"), nullable=False),
    # RequestReturn's idempotency key (order + requester + request_id).
    sa.Column("request_key", sa.Text, nullable=False, unique=True),
    sa.Column("lines", pg.JSONB, nullable=False),
    sa.Column("ship_to", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("expires_at", _ts, nullable=False),
    # The receipt's request_id: the same one again finishes it, another is a second receipt.
    sa.Column("receipt_request_id", sa.Text),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
    sa.Column("updated_at", _ts, nullable=False, server_default=_now),
    sa.Index("ix_return_authorizations_order", "order_id"),
)

#: The sandbox konbini network's ledger: payment numbers issued for orders, keyed by the
#: authorization's idempotency key, and whether the money came before the deadline. Like
#: the card sandbox it plays an outside party, so its state outlives an order-service crash.
konbini_payments = sa.Table(
    "konbini_payments",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("number", sa.Text, nullable=False, unique=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False, server_default="JPY"),
    sa.Column("deadline", _ts, nullable=False),
    # issued / paid / voided
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("paid_at", _ts),
    sa.Column("created_at", _ts, nullable=False, server_default=_now),
)
