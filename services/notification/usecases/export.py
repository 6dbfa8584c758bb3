"""Notification use cases: what this service holds about a customer, for her GDPR export (its
copy of her contact details and consents, her messages without their bodies, journeys,
suppressions of her addresses, push subscriptions), credentials left out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from services.notification.models import (
    consents,
    contacts,
    customer_orders,
    journey_exits,
    journey_runs,
    messages,
    push_subscriptions,
    suppressions,
)
from tenpo.kit import export
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database

#: Withheld: message bodies and their data can hold links with single-use secrets (password
#: reset, consent confirmation) and personal codes; she has the messages themselves. A
#: journey's data may hold a personal code; a push subscription's keys are credentials.
LEFT_OUT = {
    "messages": ("text_body", "html_body", "data", "trace", "mail_token_id"),
    "journey_runs": ("data", "trace"),
    "push_subscriptions": ("p256dh", "auth"),
}


class CustomerExport:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    async def export(self, principal: Principal, customer_ref: str) -> str:
        customer_id = export.export_subject(principal, customer_ref)
        key = uuid.UUID(customer_id)
        async with self.db.unit_of_work() as uow:
            session = uow.session
            contact = await export.rows(session, contacts, contacts.c.customer_id == key)
            addresses = [a for c in contact for a in (c["email"], c["phone"]) if a]
            tables = {
                "contacts": contact,
                "consents": await export.rows(session, consents, consents.c.customer_id == key),
                "messages": await export.rows(
                    session,
                    messages,
                    messages.c.customer_id == key,
                    leave_out=LEFT_OUT["messages"],
                ),
                "journey_runs": await export.rows(
                    session,
                    journey_runs,
                    journey_runs.c.customer_id == key,
                    leave_out=LEFT_OUT["journey_runs"],
                ),
                "journey_exits": await export.rows(
                    session, journey_exits, journey_exits.c.customer_id == key
                ),
                "customer_orders": await export.rows(
                    session, customer_orders, customer_orders.c.customer_id == key
                ),
                "suppressions": await export.rows(
                    session,
                    suppressions,
                    suppressions.c.address.in_(addresses) if addresses else sa.false(),
                ),
                "push_subscriptions": await export.rows(
                    session,
                    push_subscriptions,
                    push_subscriptions.c.customer_id == key,
                    leave_out=LEFT_OUT["push_subscriptions"],
                ),
            }
        return export.document("notification", customer_id, tables, self.clock(), left_out=LEFT_OUT)
