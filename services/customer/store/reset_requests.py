"""Customer persistence: the queue of password reset requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.models import password_reset_requests


@dataclass(frozen=True)
class ResetRequest:
    seq: int
    email_key: str
    requested_at: datetime


class ResetRequestStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def enqueue(self, email_key: str, now: datetime) -> None:
        await self.session.execute(
            sa.insert(password_reset_requests).values(email_key=email_key, requested_at=now)
        )

    async def claim_oldest(self) -> ResetRequest | None:
        """The oldest request no other replica is handling, locked until the transaction
        ends (SKIP LOCKED: replicas share the queue without waiting on each other)."""
        row = (
            await self.session.execute(
                sa.select(password_reset_requests)
                .order_by(password_reset_requests.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
        ).first()
        return ResetRequest(row.seq, row.email_key, row.requested_at) if row else None

    async def delete(self, seq: int) -> None:
        await self.session.execute(
            sa.delete(password_reset_requests).where(password_reset_requests.c.seq == seq)
        )

    async def pending(self) -> int:
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count()).select_from(password_reset_requests)
                )
            ).scalar_one()
        )
