"""Customer persistence: the append-only consent ledger."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    consent_events,
)


def _consent(row: RowMapping) -> d.ConsentEntry:
    return d.ConsentEntry(
        id=row["id"],
        customer_id=row["customer_id"],
        purpose=d.ConsentPurpose(row["purpose"]),
        channel=d.ConsentChannel(row["channel"]),
        action=d.ConsentAction(row["action"]),
        status=d.ConsentStatus(row["status"]),
        wording_version=row["wording_version"],
        source_channel=row["source_channel"],
        source_store_id=row["source_store_id"],
        actor_kind=row["actor_kind"],
        recorded_at=row["recorded_at"],
    )


class ConsentStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all_of(self, customer_id: uuid.UUID) -> list[d.ConsentEntry]:
        rows = await self.session.execute(
            sa.select(consent_events)
            .where(consent_events.c.customer_id == customer_id)
            .order_by(consent_events.c.seq)
        )
        return [_consent(r) for r in rows.mappings()]

    async def history(
        self,
        customer_id: uuid.UUID,
        *,
        purpose: d.ConsentPurpose | None,
        channel: d.ConsentChannel | None,
        before_seq: int | None,
        limit: int,
    ) -> list[tuple[int, d.ConsentEntry]]:
        query = sa.select(consent_events).where(consent_events.c.customer_id == customer_id)
        if purpose is not None:
            query = query.where(consent_events.c.purpose == int(purpose))
        if channel is not None:
            query = query.where(consent_events.c.channel == int(channel))
        if before_seq is not None:
            query = query.where(consent_events.c.seq < before_seq)
        query = query.order_by(consent_events.c.seq.desc()).limit(limit)
        return [(r["seq"], _consent(r)) for r in (await self.session.execute(query)).mappings()]

    async def append(self, entry: d.ConsentEntry) -> None:
        await self.session.execute(
            sa.insert(consent_events).values(
                id=entry.id,
                customer_id=entry.customer_id,
                purpose=int(entry.purpose),
                channel=int(entry.channel),
                action=int(entry.action),
                status=int(entry.status),
                wording_version=entry.wording_version,
                source_channel=entry.source_channel,
                source_store_id=entry.source_store_id,
                actor_kind=entry.actor_kind,
                recorded_at=entry.recorded_at,
            )
        )
