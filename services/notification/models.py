"""Notification tables (SQLAlchemy 2 Core); migrations are generated from these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import service_metadata

metadata = service_metadata()
_now = sa.func.now()


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    ]


templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("category", sa.SmallInteger, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("segment_budget", sa.SmallInteger, nullable=False),
    sa.Column("cap_policy", sa.SmallInteger, nullable=False),
    sa.Column("sample_data", pg.JSONB, nullable=False),
    *_times(),
    sa.UniqueConstraint("key", "channel", "language"),
)

# Every version ever saved: a message names the version it was rendered from.
template_versions = sa.Table(
    "template_versions",
    metadata,
    sa.Column("template_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("body", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# What the notification service knows of a recipient: a copy fetched from the customer
# service, erased on CustomerErased and dropped on CustomerUpdated (fetched again).
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("customer_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("locale", sa.Text, nullable=False),
    sa.Column("time_zone", sa.Text, nullable=False),
    # How mails address the customer ({{ name }}).
    sa.Column("given_name", sa.Text, nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# Projection of the customer service's ConsentChanged events (purpose x channel).
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("customer_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("purpose", sa.SmallInteger, primary_key=True),
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.SmallInteger, primary_key=True),
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("marketing_only", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("customer_id", pg.UUID(as_uuid=True)),
    # One event (or request) -> at most one message per template and channel.
    sa.Column("dedupe_key", sa.Text, nullable=False),
    sa.Column("template_key", sa.Text, nullable=False),
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("category", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("status_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("to_address", sa.Text, nullable=False, server_default=""),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("text_body", sa.Text, nullable=False, server_default=""),
    sa.Column("html_body", sa.Text, nullable=False, server_default=""),
    sa.Column("segments", sa.SmallInteger, nullable=False, server_default="0"),
    # Template variables, kept until sent (a mail rendered at send time needs them).
    sa.Column("data", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # The trace of the event that caused it (W3C headers), continued when it is handled.
    sa.Column("trace", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # A mail whose link secret the customer service issues at send time (IssueMailToken).
    sa.Column("mail_token_id", sa.Text, nullable=False, server_default=""),
    sa.Column("journey_id", pg.UUID(as_uuid=True)),
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("opened_at", sa.DateTime(timezone=True)),
    sa.Column("clicked_at", sa.DateTime(timezone=True)),
    sa.Column("provider_id", sa.Text, nullable=False, server_default=""),
    # What the provider reported later (callbacks): DELIVERED, BOUNCED, FAILED ("" none yet).
    sa.Column("delivery_status", sa.Text, nullable=False, server_default=""),
    sa.Column("delivery_updated_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.UniqueConstraint("dedupe_key", "template_key", "channel"),
    sa.Index("ix_messages_provider_id", "channel", "provider_id"),
    sa.Index("ix_messages_due", "scheduled_at", postgresql_where=sa.text("status IN (1, 2)")),
    sa.Index("ix_messages_customer_created", "customer_id", "created_at"),
    sa.Index("ix_messages_created_id", "created_at", "id"),
)

# The links of a sent message: a click token names an index, never a URL.
message_links = sa.Table(
    "message_links",
    metadata,
    sa.Column(
        "message_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("index", sa.SmallInteger, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
)

journeys = sa.Table(
    "journeys",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("trigger_event", sa.Text, nullable=False),
    sa.Column("steps", pg.JSONB, nullable=False),
    sa.Column("exit_events", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # Field values a trigger event must have ({"segment": "lapsed"}); empty: any.
    sa.Column("trigger_match", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    *_times(),
    sa.Index("ix_journeys_trigger_event", "trigger_event"),
)

# One recipient's way through a journey; a durable timer (due_at) claimed with SKIP LOCKED
# by whichever replica looks first.
journey_runs = sa.Table(
    "journey_runs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "journey_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("journeys.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("customer_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("trigger_event_id", sa.Text, nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    # A wait that started: the step is done when due_at comes (or its condition holds).
    sa.Column("waiting", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("waiting_for", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("last_message_id", pg.UUID(as_uuid=True)),
    sa.Column("status", sa.Text, nullable=False),  # active | completed | exited
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    # The trace of the event that caused it (W3C headers), continued when it is handled.
    sa.Column("trace", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # Variables of the run's messages: the trigger event's fields, an issued code, and the
    # A/B variants it was sent down ({"variants": {step id: name}}).
    sa.Column("data", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # Failed attempts of the current step (an issue-code step whose cart did not answer).
    sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
    *_times(),
    sa.UniqueConstraint("journey_id", "trigger_event_id"),
    sa.Index("ix_journey_runs_due", "due_at", postgresql_where=sa.text("status = 'active'")),
    sa.Index("ix_journey_runs_customer", "customer_id"),
)

# Who went down which arm of a split, and the first message each was sent after it: the
# sample an automatic winner is chosen from (ids only).
split_members = sa.Table(
    "split_members",
    metadata,
    sa.Column("run_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("step_id", sa.Text, primary_key=True),
    sa.Column(
        "journey_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("journeys.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("message_id", pg.UUID(as_uuid=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_split_members_split", "journey_id", "step_id"),
)

# A split's winner, decided once (the first replica to decide wins the insert).
split_decisions = sa.Table(
    "split_decisions",
    metadata,
    sa.Column(
        "journey_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("journeys.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("step_id", sa.Text, primary_key=True),
    sa.Column("winner", sa.Text, nullable=False),
    sa.Column("metric", sa.SmallInteger, nullable=False),
    # [{"name", "sent", "converted"}] as seen when deciding.
    sa.Column("results", pg.JSONB, nullable=False),
    sa.Column("z_score", sa.Float, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# Events that end journeys, per customer (re-checked before every step).
journey_exits = sa.Table(
    "journey_exits",
    metadata,
    sa.Column("customer_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("event_type", sa.Text, primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
)

# What the order events this service has seen say about a customer (segments, "bought
# since?"); one row per customer, each order counted once (the consumer's inbox).
customer_orders = sa.Table(
    "customer_orders",
    metadata,
    sa.Column("customer_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("orders", sa.Integer, nullable=False),
    sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=False),
)

# A customer's Web Push subscriptions, one per browser or app install (bounded per customer).
push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("customer_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("p256dh", sa.Text, nullable=False),
    sa.Column("auth", sa.Text, nullable=False),
    sa.Column("device_label", sa.Text, nullable=False, server_default=""),
    *_times(),
    sa.UniqueConstraint("customer_id", "endpoint"),
)
