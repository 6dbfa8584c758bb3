"""Customer persistence: staff users."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    staff_users,
)


@dataclass(frozen=True)
class StaffUser:
    id: uuid.UUID
    email: str
    display_name: str
    password_hash: str
    scopes: tuple[str, ...]
    disabled: bool


class StaffStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_table(self) -> None:
        """Until the transaction ends, no other transaction adds staff users: the bootstrap
        checks "no staff yet" and inserts under this lock, so two at once create one."""
        await self.session.execute(sa.text("LOCK TABLE staff_users IN SHARE ROW EXCLUSIVE MODE"))

    async def count(self) -> int:
        return int(
            (
                await self.session.execute(sa.select(sa.func.count()).select_from(staff_users))
            ).scalar_one()
        )

    async def by_email(self, email_key: str) -> StaffUser | None:
        row = (
            (
                await self.session.execute(
                    sa.select(staff_users).where(staff_users.c.email_key == email_key)
                )
            )
            .mappings()
            .first()
        )
        return self._to_domain(row) if row else None

    async def get(self, staff_id: uuid.UUID) -> StaffUser | None:
        row = (
            (await self.session.execute(sa.select(staff_users).where(staff_users.c.id == staff_id)))
            .mappings()
            .first()
        )
        return self._to_domain(row) if row else None

    @staticmethod
    def _to_domain(row: RowMapping) -> StaffUser:
        return StaffUser(
            id=row["id"],
            email=row["email"],
            display_name=row["display_name"],
            password_hash=row["password_hash"],
            scopes=tuple(row["scopes"]),
            disabled=row["disabled_at"] is not None,
        )

    async def upsert(
        self, email: d.Email, display_name: str, password_hash: str, scopes: Sequence[str]
    ) -> uuid.UUID:
        insert = pg.insert(staff_users).values(
            id=uuid.uuid4(),
            email=email.address,
            email_key=email.key,
            display_name=display_name,
            password_hash=password_hash,
            scopes=list(scopes),
        )
        result = await self.session.execute(
            insert.on_conflict_do_update(
                index_elements=[staff_users.c.email_key],
                set_={
                    "display_name": insert.excluded.display_name,
                    "password_hash": insert.excluded.password_hash,
                    "scopes": insert.excluded.scopes,
                    "disabled_at": None,
                },
            ).returning(staff_users.c.id)
        )
        return uuid.UUID(str(result.scalar_one()))
