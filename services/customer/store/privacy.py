"""Customer persistence: housekeeping, GDPR export and erasure across every table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    CUSTOMER_TABLES,
    SECRET_COLUMNS,
    addresses,
    campaign_awards,
    device_sessions,
    one_time_tokens,
    password_reset_requests,
    refresh_tokens,
    sign_in_attempts,
)
from services.customer.store.loyalty import LoyaltyStore
from services.customer.store.segments import SegmentStore
from services.customer.store.throttle import ThrottleStore
from services.customer.store.timeline import TimelineStore
from services.customer.store.tokens import TokenStore
from tenpo.kit.db import idempotency_table, outbox_table


async def purge_expired(session: AsyncSession, before: datetime) -> dict[str, int]:
    """Delete what expired before ``before``: spent or stale credentials and lockout
    counters nobody has touched since. Returns rows deleted per table."""
    statements = {
        "refresh_tokens": sa.delete(refresh_tokens).where(refresh_tokens.c.expires_at < before),
        "one_time_tokens": sa.delete(one_time_tokens).where(one_time_tokens.c.expires_at < before),
        "device_sessions": sa.delete(device_sessions).where(device_sessions.c.expires_at < before),
        "sign_in_attempts": sa.delete(sign_in_attempts).where(
            # The latest moment the row was used (GREATEST skips NULLs).
            sa.func.greatest(
                sign_in_attempts.c.locked_until,
                sign_in_attempts.c.last_failure_at,
                sign_in_attempts.c.in_flight_at,
            )
            < before
        ),
    }
    deleted = {}
    for name, statement in statements.items():
        result = await session.execute(statement)
        deleted[name] = int(getattr(result, "rowcount", 0) or 0)
    return deleted


class PrivacyStore:
    """Export and erasure across every table that holds something about a customer."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _events_about(customer_id: uuid.UUID, event_types: Sequence[str]) -> sa.ColumnElement[bool]:
        # Every event of this service names its customer's id; the payload is protobuf bytes,
        # so the id's text is looked for inside them.
        return sa.and_(
            outbox_table.c.event_type.in_(list(event_types)),
            sa.text("position(:needle IN outbox.payload) > 0").bindparams(
                sa.bindparam("needle", str(customer_id).encode(), type_=sa.LargeBinary)
            ),
        )

    @staticmethod
    def _idempotency_of(customer_id: uuid.UUID) -> sa.ColumnElement[bool]:
        # Scopes of calls on a customer end in their id (e.g. "CreateAddress:<id>").
        return idempotency_table.c.scope.like(f"%:{customer_id}")

    async def export(
        self, customer_id: uuid.UUID, throttle_key: bytes | None, event_types: Sequence[str]
    ) -> dict[str, Any]:
        """Rows about the customer, table by table, without credential hashes. Outbox rows
        keep their raw ``payload`` for the caller to decode."""
        document: dict[str, Any] = {}
        for name, column in CUSTOMER_TABLES.items():
            table = column.table
            assert isinstance(table, sa.Table)
            visible = [c for c in table.c if c.name not in SECRET_COLUMNS]
            query = sa.select(*visible).where(column == customer_id)
            if "seq" in table.c:
                query = query.order_by(table.c.seq)
            elif "created_at" in table.c:
                query = query.order_by(table.c.created_at)
            if table is refresh_tokens:
                query = query.where(refresh_tokens.c.subject_kind == int(d.SubjectKind.CUSTOMER))
            rows = (await self.session.execute(query)).mappings().all()
            document[name] = [d.json_ready(dict(row)) for row in rows]
        attempts = None
        if throttle_key is not None:
            attempts = await ThrottleStore(self.session).get(throttle_key)
        document["sign_in_attempts"] = [d.json_ready(attempts)] if attempts else []
        events = await self.session.execute(
            sa.select(
                outbox_table.c.id,
                outbox_table.c.subject,
                outbox_table.c.event_type,
                outbox_table.c.occurred_at,
                outbox_table.c.published_at,
                outbox_table.c.payload,
            )
            .where(self._events_about(customer_id, event_types))
            .order_by(outbox_table.c.seq)
        )
        document["outbox"] = [
            {
                **d.json_row({k: v for k, v in row.items() if k != "payload"}),
                "payload": row["payload"],
            }
            for row in events.mappings()
        ]
        keys = await self.session.execute(
            sa.select(
                idempotency_table.c.scope,
                idempotency_table.c.request_id,
                idempotency_table.c.created_at,
            )
            .where(self._idempotency_of(customer_id))
            .order_by(idempotency_table.c.created_at)
        )
        document["idempotency_keys"] = [d.json_ready(dict(row)) for row in keys.mappings()]
        return document

    async def erase(
        self,
        customer: d.Customer,
        throttle_key: bytes | None,
        event_types: Sequence[str],
        now: datetime,
    ) -> None:
        customer_id = customer.id
        await self.session.execute(
            sa.delete(addresses).where(addresses.c.customer_id == customer_id)
        )
        await self.session.execute(
            sa.delete(one_time_tokens).where(one_time_tokens.c.customer_id == customer_id)
        )
        if throttle_key is not None:
            await ThrottleStore(self.session).clear(throttle_key)
        if customer.email_key is not None:
            await self.session.execute(
                sa.delete(password_reset_requests).where(
                    password_reset_requests.c.email_key == customer.email_key
                )
            )
        await TokenStore(self.session).revoke_subject(d.SubjectKind.CUSTOMER, customer_id, now)
        # What she did in stores goes; the points ledger stays (an accounting record under
        # the pseudonymous id), without its one free text, staff's adjustment reasons.
        await TimelineStore(self.session).erase(customer_id)
        # Her segments and birthday announcements profile her: they go. The review lock
        # first, so a sweep recomputing her right now finishes before (and a later one
        # finds her erased).
        segments = SegmentStore(self.session)
        await segments.lock(customer_id, now)
        await segments.erase(customer_id)
        await LoyaltyStore(self.session).blank_adjust_reasons(customer_id)
        # Which campaigns she took part in is marketing data about her: it goes (the points
        # stay in the ledger and earnings, the campaign's budget stays spent). The order
        # projection, earnings, tier and the store card's ledger hold ids and amounts only
        # and stay as the accounting record, like the points ledger.
        await self.session.execute(
            sa.delete(campaign_awards).where(campaign_awards.c.customer_id == customer_id)
        )
        # Idempotency records keep whole responses (addresses, profiles).
        await self.session.execute(
            sa.delete(idempotency_table).where(self._idempotency_of(customer_id))
        )
        # Earlier events about the customer carry only ids, but a pending one would still be
        # delivered after the CustomerErased that follows it, and the export lists them all:
        # published or not, they go.
        await self.session.execute(
            sa.delete(outbox_table).where(self._events_about(customer_id, event_types))
        )
