"""Commit-ordered wake-ups across replicas: a transaction that queues a message or starts a
journey run calls ``notify`` (PostgreSQL NOTIFY is delivered at commit, and only then), and
every replica's listener wakes its sender or journey runner at once. The loops still poll,
so a lost listener connection only costs latency."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)
MESSAGES = "notification_messages"
JOURNEYS = "notification_journeys"


async def notify(session: AsyncSession, channel: str) -> None:
    await session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": channel})


class Listener:
    def __init__(self, database_url: str, events: dict[str, asyncio.Event]) -> None:
        self.dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.events = events

    def _deliver(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        event = self.events.get(channel)
        if event is not None:
            event.set()

    async def run(self) -> None:
        while True:
            connection = None
            try:
                connection = await _connect(self.dsn)
                for channel in self.events:
                    await connection.add_listener(channel, self._deliver)
                # Anything committed while we were not listening is found by this round.
                for event in self.events.values():
                    event.set()
                while not connection.is_closed():
                    await asyncio.sleep(5)
                    await connection.execute("SELECT 1")  # notices a dead connection
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("wake-up listener lost its connection", extra={"error": repr(error)})
                await asyncio.sleep(1)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)


async def _connect(dsn: str) -> Any:
    """A connection that is closed, not leaked, when the caller is cancelled while it is
    being opened (a leaked one would hold the database open, e.g. against DROP DATABASE)."""
    opening = asyncio.ensure_future(asyncpg.connect(dsn, timeout=10))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:

        def close_when_open(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is None:
                task.result().terminate()

        opening.add_done_callback(close_when_open)
        raise
