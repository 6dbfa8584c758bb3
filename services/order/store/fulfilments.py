"""Fulfilments in SQL: rows ⇄ domain objects, the sweeper's claims, the order's progress."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.domain.fulfilments import (
    OPEN_STATUSES,
    CaptureState,
    FulfillmentLine,
    FulfillmentStatus,
    FulfillmentType,
    Fulfilment,
)
from services.order.domain.orders import Order
from services.order.models import fulfillments, orders


def action_at(fulfilment: Fulfilment, now: datetime) -> datetime | None:
    """When the sweeper must next look at it: a capture owed (now), a hold running out."""
    if fulfilment.capture_state is CaptureState.DUE:
        return now
    if fulfilment.status is FulfillmentStatus.READY_FOR_PICKUP:
        return fulfilment.hold_until
    return None


def _values(fulfilment: Fulfilment, now: datetime) -> dict[str, Any]:
    window = fulfilment.window
    return {
        "status": int(fulfilment.status),
        "amount": fulfilment.amount,
        "capture_state": int(fulfilment.capture_state),
        "lines": [asdict(line) for line in fulfilment.lines],
        "due_at": fulfilment.due_at,
        "window_start": window[0] if window else None,
        "window_end": window[1] if window else None,
        "pickup_nonce": fulfilment.pickup_nonce,
        "pickup_code_digest": fulfilment.pickup_code_digest,
        "hold_until": fulfilment.hold_until,
        "ready_at": fulfilment.ready_at,
        "carrier": fulfilment.carrier,
        "tracking_number": fulfilment.tracking_number,
        "shipped_at": fulfilment.shipped_at,
        "cancel_reason": fulfilment.cancel_reason,
        "code_failures": fulfilment.code_failures,
        "code_locked_until": fulfilment.code_locked_until,
        "action_at": action_at(fulfilment, now),
    }


def _fulfilment(row: Any) -> Fulfilment:
    window = (row.window_start, row.window_end) if row.window_start else None
    return Fulfilment(
        id=row.id,
        order_id=row.order_id,
        number=row.number,
        type=FulfillmentType(row.type),
        status=FulfillmentStatus(row.status),
        location_id=row.location_id,
        store_id=row.store_id,
        lines=tuple(FulfillmentLine(**line) for line in row.lines),
        amount=row.amount,
        capture_state=CaptureState(row.capture_state),
        due_at=row.due_at,
        window=window,
        pickup_nonce=row.pickup_nonce,
        pickup_code_digest=row.pickup_code_digest,
        hold_until=row.hold_until,
        ready_at=row.ready_at,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        shipped_at=row.shipped_at,
        cancel_reason=row.cancel_reason,
        code_failures=row.code_failures,
        code_locked_until=row.code_locked_until,
        updated_at=row.updated_at,
    )


class FulfilmentStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rekey_legacy_codes(self, digest: Callable[[uuid.UUID, str], bytes]) -> int:
        """Replace plain-text pickup codes by their keyed digests; the number replaced."""
        rows = (
            await self.session.execute(
                sa.select(fulfillments.c.id, fulfillments.c.legacy_pickup_code)
                .where(fulfillments.c.legacy_pickup_code.is_not(None))
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            await self.session.execute(
                sa.update(fulfillments)
                .where(fulfillments.c.id == row.id)
                .values(
                    pickup_code_digest=digest(row.id, row.legacy_pickup_code),
                    legacy_pickup_code=None,
                )
            )
        return len(rows)

    async def insert(self, items: Sequence[Fulfilment], now: datetime) -> None:
        if not items:
            return
        await self.session.execute(
            sa.insert(fulfillments),
            [
                {
                    "id": f.id,
                    "order_id": f.order_id,
                    "number": f.number,
                    "type": int(f.type),
                    "location_id": f.location_id,
                    "store_id": f.store_id,
                    **_values(f, now),
                }
                for f in items
            ],
        )

    async def get(self, fulfilment_id: uuid.UUID) -> Fulfilment | None:
        row = (
            await self.session.execute(
                sa.select(fulfillments).where(fulfillments.c.id == fulfilment_id)
            )
        ).first()
        return _fulfilment(row) if row else None

    async def of_order(self, order_id: uuid.UUID) -> list[Fulfilment]:
        return (await self.of_orders([order_id])).get(order_id, [])

    async def of_orders(self, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Fulfilment]]:
        ids = list(order_ids)
        found: dict[uuid.UUID, list[Fulfilment]] = {}
        if not ids:
            return found
        rows = await self.session.execute(
            sa.select(fulfillments)
            .where(fulfillments.c.order_id.in_(ids))
            .order_by(fulfillments.c.order_id, fulfillments.c.number)
        )
        for row in rows:
            found.setdefault(row.order_id, []).append(_fulfilment(row))
        return found

    async def open_at_store(
        self,
        store_id: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        *,
        statuses: Iterable[FulfillmentStatus] = OPEN_STATUSES,
    ) -> list[tuple[Fulfilment, str, str]]:
        """A store's open fulfilments (or those in ``statuses``), with their order's number
        and currency, earliest due first."""
        query = (
            sa.select(fulfillments, orders.c.number.label("order_number"), orders.c.currency)
            .join(orders, orders.c.id == fulfillments.c.order_id)
            .where(
                fulfillments.c.store_id == store_id,
                fulfillments.c.status.in_([int(s) for s in statuses]),
            )
        )
        if after is not None:
            query = query.where(
                sa.tuple_(fulfillments.c.due_at, fulfillments.c.id) > sa.tuple_(*after)
            )
        query = query.order_by(fulfillments.c.due_at, fulfillments.c.id).limit(limit)
        return [
            (_fulfilment(row), row.order_number, row.currency)
            for row in await self.session.execute(query)
        ]

    async def save(self, fulfilment: Fulfilment, now: datetime) -> None:
        await self.session.execute(
            sa.update(fulfillments)
            .where(fulfillments.c.id == fulfilment.id)
            .values(**_values(fulfilment, now), updated_at=sa.func.now())
        )

    async def claim_due(self, lease: timedelta, limit: int) -> list[uuid.UUID]:
        """Take up to ``limit`` fulfilments whose action time came, pushing it ``lease``
        ahead (a sweeper that dies leaves them to the next one after that). SKIP LOCKED:
        replicas never take the same fulfilment."""
        due = (
            sa.select(fulfillments.c.id)
            .where(fulfillments.c.action_at <= sa.func.now())
            .order_by(fulfillments.c.action_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await self.session.execute(
            sa.update(fulfillments)
            .where(fulfillments.c.id.in_(due))
            .values(action_at=sa.func.now() + lease)
            .returning(fulfillments.c.id)
        )
        return [row.id for row in rows]

    async def lock_order(self, order_id: uuid.UUID) -> None:
        """Serialize changes of one order's fulfilments: the order's progress (completed,
        captured) is decided by one of them at a time."""
        await self.session.execute(
            sa.select(orders.c.id).where(orders.c.id == order_id).with_for_update()
        )

    async def save_order_progress(self, order: Order) -> None:
        """The order's status and payment state as its fulfilments made them. Not through
        the saga's save: a placed order's saga is over and holds no lease."""
        await self.session.execute(
            sa.update(orders)
            .where(orders.c.id == order.id)
            .values(
                status=int(order.status),
                payment_state=int(order.payment_state),
                failure_reason=order.failure_reason,
                refs=order.refs,
                updated_at=sa.func.now(),
            )
        )

    async def watermark(self, order_id: uuid.UUID) -> tuple[Any, ...] | None:
        """Changes whenever the order or one of its fulfilments changes (WatchOrder polls
        this one-row index lookup instead of loading the order)."""
        row = (
            await self.session.execute(
                sa.select(
                    orders.c.updated_at,
                    sa.select(sa.func.max(fulfillments.c.updated_at))
                    .where(fulfillments.c.order_id == order_id)
                    .scalar_subquery(),
                ).where(orders.c.id == order_id)
            )
        ).first()
        return tuple(row) if row else None
