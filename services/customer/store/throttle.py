"""Customer persistence: sign-in attempt counters (lockout)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.models import (
    sign_in_attempts,
)


@dataclass(frozen=True)
class Attempts:
    failures: int
    locked_until: datetime | None
    in_flight: int = 0
    in_flight_at: datetime | None = None


class ThrottleStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_row(self, key: bytes) -> Attempts:
        """The counters for ``key``, row-locked until the transaction ends: concurrent
        attempts on one e-mail queue here, so none slips past a lock.

        One upsert rather than insert-if-missing then SELECT … FOR UPDATE: a successful
        sign-in deletes the row, and an attempt queued behind it would then find none.
        ON CONFLICT DO UPDATE either inserts or locks the row that is there, atomically."""
        insert = pg.insert(sign_in_attempts).values(key=key, failures=0)
        row = (
            await self.session.execute(
                insert.on_conflict_do_update(
                    index_elements=[sign_in_attempts.c.key],
                    set_={"key": insert.excluded.key},
                ).returning(
                    sign_in_attempts.c.failures,
                    sign_in_attempts.c.locked_until,
                    sign_in_attempts.c.in_flight,
                    sign_in_attempts.c.in_flight_at,
                )
            )
        ).one()
        return Attempts(row.failures, row.locked_until, row.in_flight, row.in_flight_at)

    async def admit(self, key: bytes, in_flight: int, now: datetime) -> None:
        """Count one more attempt in flight (the row is locked by ``lock_row``)."""
        await self.session.execute(
            sa.update(sign_in_attempts)
            .where(sign_in_attempts.c.key == key)
            .values(in_flight=in_flight + 1, in_flight_at=now)
        )

    async def save(
        self,
        key: bytes,
        failures: int,
        locked_until: datetime | None,
        now: datetime,
        *,
        in_flight: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "failures": failures,
            "locked_until": locked_until,
            "last_failure_at": now,
        }
        if in_flight is not None:
            values["in_flight"] = in_flight
        await self.session.execute(
            sa.update(sign_in_attempts).where(sign_in_attempts.c.key == key).values(**values)
        )

    async def succeeded(self, key: bytes, in_flight: int) -> None:
        """A correct password: the failures are forgiven. The row goes unless other
        attempts are still in flight (their outcome is counted on it)."""
        if in_flight <= 0:
            await self.clear(key)
            return
        await self.session.execute(
            sa.update(sign_in_attempts)
            .where(sign_in_attempts.c.key == key)
            .values(failures=0, locked_until=None, in_flight=in_flight)
        )

    async def set_in_flight(self, key: bytes, in_flight: int) -> None:
        await self.session.execute(
            sa.update(sign_in_attempts)
            .where(sign_in_attempts.c.key == key)
            .values(in_flight=in_flight)
        )

    async def clear(self, key: bytes) -> None:
        await self.session.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.key == key))

    async def get(self, key: bytes) -> dict[str, Any] | None:
        row = (
            (
                await self.session.execute(
                    sa.select(sign_in_attempts).where(sign_in_attempts.c.key == key)
                )
            )
            .mappings()
            .first()
        )
        return {k: v for k, v in row.items() if k != "key"} if row else None
