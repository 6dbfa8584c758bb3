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
