"""Customer persistence: refresh tokens and mailed single-use tokens (stored hashed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    one_time_tokens,
    refresh_tokens,
)


@dataclass(frozen=True)
class RefreshRecord:
    id: uuid.UUID
    family_id: uuid.UUID
    subject_kind: d.SubjectKind
    subject_id: uuid.UUID
    channel: int
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class OneTimeRecord:
    id: uuid.UUID
    customer_id: uuid.UUID
    purpose: d.TokenPurpose
    subject: Mapping[str, Any]
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


class TokenStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_refresh(
        self,
        *,
        token_hash: bytes,
        family_id: uuid.UUID,
        subject_kind: d.SubjectKind,
        subject_id: uuid.UUID,
        channel: int,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        await self.session.execute(
            sa.insert(refresh_tokens).values(
                id=uuid.uuid4(),
                family_id=family_id,
                subject_kind=int(subject_kind),
                subject_id=subject_id,
                token_hash=token_hash,
                channel=channel,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def refresh_by_hash(self, token_hash: bytes) -> RefreshRecord | None:
        # Locked: two concurrent refreshes with one token must not both succeed.
        row = (
            (
                await self.session.execute(
                    sa.select(refresh_tokens)
                    .where(refresh_tokens.c.token_hash == token_hash)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return RefreshRecord(
            id=row["id"],
            family_id=row["family_id"],
            subject_kind=d.SubjectKind(row["subject_kind"]),
            subject_id=row["subject_id"],
            channel=row["channel"],
            expires_at=row["expires_at"],
            used_at=row["used_at"],
            revoked_at=row["revoked_at"],
        )

    async def mark_used(self, token_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(used_at=now)
        )

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_subject(
        self, subject_kind: d.SubjectKind, subject_id: uuid.UUID, now: datetime
    ) -> None:
        await self.session.execute(
            sa.update(refresh_tokens)
            .where(
                refresh_tokens.c.subject_kind == int(subject_kind),
                refresh_tokens.c.subject_id == subject_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )

    async def add_one_time(
        self,
        *,
        customer_id: uuid.UUID,
        purpose: d.TokenPurpose,
        token_hash: bytes,
        subject: Mapping[str, Any],
        now: datetime,
        expires_at: datetime,
    ) -> uuid.UUID:
        token_id = uuid.uuid4()
        await self.session.execute(
            sa.insert(one_time_tokens).values(
                id=token_id,
                customer_id=customer_id,
                purpose=int(purpose),
                token_hash=token_hash,
                subject=dict(subject),
                created_at=now,
                expires_at=expires_at,
            )
        )
        return token_id

    async def one_time_by_hash(self, token_hash: bytes) -> OneTimeRecord | None:
        return await self._one_time(one_time_tokens.c.token_hash == token_hash)

    async def one_time_by_id(self, token_id: uuid.UUID) -> OneTimeRecord | None:
        return await self._one_time(one_time_tokens.c.id == token_id)

    async def _one_time(self, condition: sa.ColumnElement[bool]) -> OneTimeRecord | None:
        # Locked: a redemption and a re-issue of one token must not interleave.
        row = (
            (
                await self.session.execute(
                    sa.select(one_time_tokens).where(condition).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return OneTimeRecord(
            id=row["id"],
            customer_id=row["customer_id"],
            purpose=d.TokenPurpose(row["purpose"]),
            subject=dict(row["subject"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            used_at=row["used_at"],
        )

    async def latest_one_time(
        self, customer_id: uuid.UUID, purpose: d.TokenPurpose
    ) -> datetime | None:
        return (
            await self.session.execute(
                sa.select(sa.func.max(one_time_tokens.c.created_at)).where(
                    one_time_tokens.c.customer_id == customer_id,
                    one_time_tokens.c.purpose == int(purpose),
                )
            )
        ).scalar()

    async def set_one_time_hash(self, token_id: uuid.UUID, token_hash: bytes) -> None:
        await self.session.execute(
            sa.update(one_time_tokens)
            .where(one_time_tokens.c.id == token_id)
            .values(token_hash=token_hash)
        )

    async def use_one_time(self, token_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            sa.update(one_time_tokens).where(one_time_tokens.c.id == token_id).values(used_at=now)
        )

    async def spend_all(
        self, customer_id: uuid.UUID, purpose: d.TokenPurpose, now: datetime
    ) -> None:
        """Every outstanding token of a purpose stops working (e.g. after a reset)."""
        await self.session.execute(
            sa.update(one_time_tokens)
            .where(
                one_time_tokens.c.customer_id == customer_id,
                one_time_tokens.c.purpose == int(purpose),
                one_time_tokens.c.used_at.is_(None),
            )
            .values(used_at=now)
        )
