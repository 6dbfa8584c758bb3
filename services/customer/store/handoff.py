"""Customer persistence: device hand-off sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    device_sessions,
)


def _device_session(row: RowMapping) -> d.DeviceSession:
    return d.DeviceSession(
        id=row["id"],
        client_id=row["client_id"],
        user_code=row["user_code"],
        channel=row["channel"],
        store_id=row["store_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        consumed_at=row["consumed_at"],
    )


class DeviceSessionStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, device_session: d.DeviceSession, device_code_hash: bytes) -> bool:
        """False on a user-code collision (the caller draws another code)."""
        result = await self.session.execute(
            pg.insert(device_sessions)
            .values(
                id=device_session.id,
                client_id=device_session.client_id,
                device_code_hash=device_code_hash,
                user_code=device_session.user_code,
                channel=device_session.channel,
                store_id=device_session.store_id,
                created_at=device_session.created_at,
                expires_at=device_session.expires_at,
            )
            .on_conflict_do_nothing(index_elements=[device_sessions.c.user_code])
            .returning(device_sessions.c.id)
        )
        return result.first() is not None

    async def live_count(self, client_id: str, now: datetime) -> int:
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count())
                    .select_from(device_sessions)
                    .where(
                        device_sessions.c.client_id == client_id,
                        device_sessions.c.expires_at > now,
                        device_sessions.c.consumed_at.is_(None),
                    )
                )
            ).scalar_one()
        )

    async def purge_expired(self, client_id: str, before: datetime) -> None:
        # Old hand-offs are worth nothing; dropping them keeps codes free for reuse.
        await self.session.execute(
            sa.delete(device_sessions).where(
                device_sessions.c.client_id == client_id, device_sessions.c.expires_at < before
            )
        )

    async def by_user_code(self, user_code: str) -> d.DeviceSession | None:
        row = (
            (
                await self.session.execute(
                    sa.select(device_sessions)
                    .where(device_sessions.c.user_code == user_code)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _device_session(row) if row else None

    async def by_device_code(self, device_code_hash: bytes) -> d.DeviceSession | None:
        row = (
            (
                await self.session.execute(
                    sa.select(device_sessions)
                    .where(device_sessions.c.device_code_hash == device_code_hash)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _device_session(row) if row else None

    async def approve(self, session_id: uuid.UUID, customer_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(device_sessions)
            .where(device_sessions.c.id == session_id)
            .values(approved_by=customer_id, approved_at=now)
        )

    async def consume(self, session_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(device_sessions)
            .where(device_sessions.c.id == session_id)
            .values(consumed_at=now)
        )
