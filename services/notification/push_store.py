"""Push subscription persistence (the store of the push use cases)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification import models as m
from services.notification.domain.push import PushSubscription

_table = m.push_subscriptions


def _subscription(r: Any) -> PushSubscription:
    return PushSubscription(
        endpoint=r.endpoint,
        p256dh=r.p256dh,
        auth=r.auth,
        device_label=r.device_label,
        id=r.id,
        created_at=r.created_at,
    )


class PushStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_customer(self, customer_id: uuid.UUID) -> None:
        """One customer's registrations queue behind each other (the bound holds)."""
        await self.session.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"push:{customer_id}")))
        )

    async def upsert(self, customer_id: uuid.UUID, s: PushSubscription) -> PushSubscription:
        row = (
            await self.session.execute(
                pg.insert(_table)
                .values(
                    id=uuid.uuid4(),
                    customer_id=customer_id,
                    endpoint=s.endpoint,
                    p256dh=s.p256dh,
                    auth=s.auth,
                    device_label=s.device_label,
                )
                .on_conflict_do_update(
                    index_elements=[_table.c.customer_id, _table.c.endpoint],
                    set_={
                        "p256dh": s.p256dh,
                        "auth": s.auth,
                        "device_label": s.device_label,
                        "updated_at": sa.func.now(),
                    },
                )
                .returning(_table)
            )
        ).one()
        return _subscription(row)

    async def keep_newest(self, customer_id: uuid.UUID, limit: int) -> None:
        keep = (
            sa.select(_table.c.id)
            .where(_table.c.customer_id == customer_id)
            .order_by(_table.c.updated_at.desc(), _table.c.id)
            .limit(limit)
        )
        await self.session.execute(
            sa.delete(_table).where(_table.c.customer_id == customer_id, _table.c.id.not_in(keep))
        )

    async def of_customer(self, customer_id: uuid.UUID) -> list[PushSubscription]:
        rows = await self.session.execute(
            sa.select(_table)
            .where(_table.c.customer_id == customer_id)
            .order_by(_table.c.updated_at.desc(), _table.c.id)
        )
        return [_subscription(r) for r in rows.all()]

    async def delete(self, customer_id: uuid.UUID, subscription_id: uuid.UUID) -> bool:
        deleted = await self.session.execute(
            sa.delete(_table)
            .where(_table.c.id == subscription_id, _table.c.customer_id == customer_id)
            .returning(_table.c.id)
        )
        return deleted.first() is not None

    async def erase_customer(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(_table).where(_table.c.customer_id == customer_id))
