"""Returns in SQL: rows ⇄ domain objects."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.domain.fulfilments import FulfillmentLine
from services.order.domain.returns import OrderReturn, ReturnStatus
from services.order.models import order_returns


def _return(row: Any) -> OrderReturn:
    return OrderReturn(
        id=row.id,
        order_id=row.order_id,
        store_id=row.store_id,
        lines=tuple(FulfillmentLine(**line) for line in row.lines),
        refund=row.refund,
        status=ReturnStatus(row.status),
        created_at=row.created_at,
        authorization_id=row.authorization_id,
    )


class ReturnStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_order(self, order_id: uuid.UUID) -> list[OrderReturn]:
        rows = await self.session.execute(
            sa.select(order_returns)
            .where(order_returns.c.order_id == order_id)
            .order_by(order_returns.c.created_at, order_returns.c.id)
        )
        return [_return(row) for row in rows]

    async def by_key(self, request_key: str) -> OrderReturn | None:
        row = (
            await self.session.execute(
                sa.select(order_returns).where(order_returns.c.request_key == request_key)
            )
        ).first()
        return _return(row) if row else None

    async def insert(self, value: OrderReturn, request_key: str) -> None:
        await self.session.execute(
            sa.insert(order_returns).values(
                id=value.id,
                order_id=value.order_id,
                request_key=request_key,
                store_id=value.store_id,
                lines=[asdict(line) for line in value.lines],
                refund=value.refund,
                status=int(value.status),
                authorization_id=value.authorization_id,
            )
        )

    async def complete(self, return_id: uuid.UUID) -> OrderReturn | None:
        """PENDING → COMPLETED; None when it was already completed (by a concurrent retry)."""
        row = (
            await self.session.execute(
                sa.update(order_returns)
                .where(
                    order_returns.c.id == return_id,
                    order_returns.c.status == int(ReturnStatus.PENDING),
                )
                .values(status=int(ReturnStatus.COMPLETED))
                .returning(*order_returns.c)
            )
        ).first()
        return _return(row) if row else None
