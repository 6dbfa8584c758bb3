"""Return authorizations in SQL: rows ⇄ domain objects."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.order.domain.fulfilments import FulfillmentLine
from services.order.domain.mail_returns import ReturnAuthorization, ReturnAuthorizationStatus
from services.order.models import return_authorization_numbers, return_authorizations

_table = return_authorizations

#: An order has few authorizations: RequestReturn refuses more than this many (cancelled
#: and expired ones count), so a list of them, and the units they hold, are all of them.
MAX_LISTED = 100


def _authorization(row: Any) -> ReturnAuthorization:
    return ReturnAuthorization(
        id=row.id,
        number=row.number,
        order_id=row.order_id,
        lines=tuple(FulfillmentLine(**line) for line in row.lines),
        ship_to=row.ship_to,
        status=ReturnAuthorizationStatus(row.status),
        expires_at=row.expires_at,
        reason=row.reason,
        receipt_request_id=row.receipt_request_id,
        created_at=row.created_at,
    )


class AuthorizationStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_order(self, order_id: uuid.UUID) -> list[ReturnAuthorization]:
        rows = await self.session.execute(
            sa.select(_table)
            .where(_table.c.order_id == order_id)
            .order_by(_table.c.created_at, _table.c.id)
            .limit(MAX_LISTED)
        )
        return [_authorization(row) for row in rows]

    async def get(
        self, *, authorization_id: uuid.UUID | None = None, number: str | None = None
    ) -> ReturnAuthorization | None:
        query = sa.select(_table)
        if authorization_id is not None:
            query = query.where(_table.c.id == authorization_id)
        if number is not None:
            query = query.where(_table.c.number == number)
        row = (await self.session.execute(query)).first()
        return _authorization(row) if row else None

    async def by_key(self, request_key: str) -> ReturnAuthorization | None:
        row = (
            await self.session.execute(sa.select(_table).where(_table.c.request_key == request_key))
        ).first()
        return _authorization(row) if row else None

    async def insert(self, value: ReturnAuthorization, request_key: str) -> ReturnAuthorization:
        """Stored with the next number of the sequence (``value.number`` is not used)."""
        number = sa.func.concat(
            "R-",
            sa.func.lpad(sa.cast(return_authorization_numbers.next_value(), sa.Text), 6, "0"),
        )
        row = (
            await self.session.execute(
                sa.insert(_table)
                .values(
                    id=value.id,
                    number=number,
                    order_id=value.order_id,
                    request_key=request_key,
                    lines=[asdict(line) for line in value.lines],
                    ship_to=value.ship_to,
                    reason=value.reason,
                    status=int(value.status),
                    expires_at=value.expires_at,
                )
                .returning(*_table.c)
            )
        ).one()
        return _authorization(row)

    async def save(self, value: ReturnAuthorization) -> None:
        await self.session.execute(
            sa.update(_table)
            .where(_table.c.id == value.id)
            .values(
                status=int(value.status),
                receipt_request_id=value.receipt_request_id,
                updated_at=sa.func.now(),
            )
        )

    async def refunded(self, authorization_id: uuid.UUID) -> None:
        """RECEIVED → REFUNDED (its return completed, in the same transaction)."""
        await self.session.execute(
            sa.update(_table)
            .where(
                _table.c.id == authorization_id,
                _table.c.status == int(ReturnAuthorizationStatus.RECEIVED),
            )
            .values(status=int(ReturnAuthorizationStatus.REFUNDED), updated_at=sa.func.now())
        )
