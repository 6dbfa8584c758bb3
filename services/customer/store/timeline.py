"""Timeline persistence: interactions, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.domain import timeline as td
from services.customer.models import customers, device_sessions, interactions

_I = interactions.c


def _interaction(row: Any) -> td.Interaction:
    return td.Interaction(
        id=row.id,
        customer_id=row.customer_id,
        kind=td.InteractionKind(row.kind),
        sku=row.sku,
        size=row.size,
        channel=row.channel,
        store_id=row.store_id,
        device_id=row.device_id,
        summary=row.summary,
        created_at=row.created_at,
        reference=row.reference,
        item_tag=row.item_tag,
    )


class TimelineStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, item: td.Interaction) -> None:
        await self.session.execute(
            sa.insert(interactions).values(
                id=item.id,
                customer_id=item.customer_id,
                kind=int(item.kind),
                sku=item.sku,
                size=item.size,
                channel=item.channel,
                store_id=item.store_id,
                device_id=item.device_id,
                summary=item.summary,
                created_at=item.created_at,
                reference=item.reference,
                item_tag=item.item_tag,
            )
        )

    async def link_anonymous(
        self,
        device_id: str,
        customer_id: uuid.UUID,
        session_id: uuid.UUID,
        since: datetime,
        until: datetime,
    ) -> int:
        """Give her the device's anonymous interactions from ``since`` to ``until``, but none
        from before the device's previous completed hand-off (that was someone else's visit);
        then, of each very item (RFID tag) those interactions read, the same store's latest
        anonymous read in that time: she carried it from the shelf to this mirror (earlier
        reads of the item may be other shoppers' who put it back). Returns how many were
        linked."""
        previous = (
            sa.select(sa.func.max(device_sessions.c.consumed_at))
            .where(device_sessions.c.client_id == device_id)
            .where(device_sessions.c.id != session_id)
            .scalar_subquery()
        )
        result = await self.session.execute(
            sa.update(interactions)
            .where(_I.device_id == device_id)
            .where(_I.customer_id.is_(None))
            .where(_I.created_at >= since)
            .where(_I.created_at <= until)
            .where(sa.or_(previous.is_(None), _I.created_at > previous))
            .values(customer_id=customer_id)
            .returning(_I.store_id, _I.item_tag)
        )
        linked = result.all()
        carried = {(store, tag) for store, tag in linked if store and tag}
        if not carried:
            return len(linked)
        latest_reads = (
            sa.select(_I.id)
            .where(_I.customer_id.is_(None))
            .where(sa.tuple_(_I.store_id, _I.item_tag).in_(sorted(carried)))
            .where(_I.created_at >= since)
            .where(_I.created_at <= until)
            .order_by(_I.store_id, _I.item_tag, _I.created_at.desc(), _I.id.desc())
            .ext(pg.distinct_on(_I.store_id, _I.item_tag))
        )
        followed = await self.session.execute(
            sa.update(interactions)
            .where(_I.id.in_(latest_reads.scalar_subquery()))
            .where(_I.customer_id.is_(None))
            .values(customer_id=customer_id)
        )
        return len(linked) + int(followed.rowcount or 0)  # type: ignore[attr-defined]

    async def customer_alive(self, customer_id: uuid.UUID) -> bool:
        """Known and not erased, the row share-locked: an erasure running now (it holds the
        row for update) is waited for and then seen, so no entry is added after it."""
        state = (
            await self.session.execute(
                sa.select(customers.c.state)
                .where(customers.c.id == customer_id)
                .with_for_update(read=True, key_share=True)
            )
        ).scalar_one_or_none()
        return state is not None and state != int(d.CustomerState.ERASED)

    async def insert_projected(self, item: td.Interaction) -> bool:
        """An entry projected from an event; its id comes from the event id, so a second
        delivery inserts nothing. False if it was there already."""
        inserted = await self.session.execute(
            pg.insert(interactions)
            .values(
                id=item.id,
                customer_id=item.customer_id,
                kind=int(item.kind),
                channel=item.channel,
                store_id=item.store_id,
                summary=item.summary,
                created_at=item.created_at,
                reference=item.reference,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(_I.id)
        )
        return inserted.first() is not None

    async def get(self, interaction_id: uuid.UUID) -> td.Interaction | None:
        row = (
            await self.session.execute(sa.select(interactions).where(_I.id == interaction_id))
        ).first()
        return _interaction(row) if row else None

    async def page(
        self, customer_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[td.Interaction]:
        query = sa.select(interactions).where(_I.customer_id == customer_id)
        if after is not None:
            query = query.where(sa.tuple_(_I.created_at, _I.id) < sa.tuple_(*after))
        rows = await self.session.execute(
            query.order_by(_I.created_at.desc(), _I.id.desc()).limit(limit)
        )
        return [_interaction(row) for row in rows]

    async def erase(self, customer_id: uuid.UUID) -> None:
        """Behaviour in stores is personal data: erasure deletes it."""
        await self.session.execute(sa.delete(interactions).where(_I.customer_id == customer_id))
