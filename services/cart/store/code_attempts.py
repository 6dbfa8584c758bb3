"""Wrong promotion codes per caller, in the cart database so every replica counts the same.

PostgreSQL rather than NATS KV: the service owns a database already, the count must be
exact under concurrency (an upsert that row-locks gives that in one statement, where a KV
store needs compare-and-set retries), and a row with its window expires by a plain DELETE
in the sweep the service runs anyway."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart.models import code_attempts


def attempts_key(caller: str) -> bytes:
    """The row key of a caller: a digest, so the table holds no ids in clear and every key
    has the same size whatever the caller's subject."""
    return hashlib.sha256(caller.encode()).digest()


class CodeAttemptStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, key: bytes, now: datetime, window: timedelta) -> int:
        """The wrong codes ``key`` tried in its current window, with the row locked until
        the transaction ends: concurrent attempts of one caller, on any replica, queue
        here, so none is judged on a stale count. A window that ended starts again at
        ``now``.

        One upsert: ON CONFLICT DO UPDATE inserts the row or locks the one there
        atomically (an insert-if-missing then SELECT … FOR UPDATE could find the row gone
        to the sweep in between)."""
        ended = code_attempts.c.window_started_at <= now - window
        insert = pg.insert(code_attempts).values(key=key, failures=0, window_started_at=now)
        row = (
            await self.session.execute(
                insert.on_conflict_do_update(
                    index_elements=[code_attempts.c.key],
                    set_={
                        "failures": sa.case((ended, 0), else_=code_attempts.c.failures),
                        "window_started_at": sa.case(
                            (ended, now), else_=code_attempts.c.window_started_at
                        ),
                    },
                ).returning(code_attempts.c.failures)
            )
        ).scalar_one()
        return int(row)

    async def count_failure(self, key: bytes) -> None:
        """One more wrong code (the row is locked by :meth:`lock` in this transaction)."""
        await self.session.execute(
            sa.update(code_attempts)
            .where(code_attempts.c.key == key)
            .values(failures=code_attempts.c.failures + 1)
        )

    async def forget_ended(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` rows whose window started at or before ``before`` (ended):
        the table stays as large as the callers of one window. Rows locked by an attempt in
        progress are skipped (the next sweep takes them)."""
        ended = (
            sa.select(code_attempts.c.key)
            .where(code_attempts.c.window_started_at <= before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            sa.delete(code_attempts).where(code_attempts.c.key.in_(ended.scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
