"""Wrong-code counters in the database: a window per caller that starts again once ended,
rows keyed by a digest, and a sweep that keeps the table to the callers of one window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.cart.models import code_attempts
from services.cart.store.code_attempts import CodeAttemptStore, attempts_key
from tests.services.cart.conftest import Clients

WINDOW = timedelta(minutes=15)


def tomorrow() -> datetime:
    """A time the service's own sweep (on the real clock) sees as not ended yet, so it
    leaves these rows alone while the test runs."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


async def test_a_window_counts_failures_and_starts_again_once_it_ended(cart: Clients) -> None:
    db = cart.host.runtime.db  # type: ignore[union-attr]
    caller = f"customer:{uuid.uuid4()}"
    key = attempts_key(caller)
    start = tomorrow()
    for minute in range(3):
        async with db.unit_of_work() as uow:
            store = CodeAttemptStore(uow.session)
            assert await store.lock(key, start + timedelta(minutes=minute), WINDOW) == minute
            await store.count_failure(key)
            await uow.commit()
    async with db.unit_of_work() as uow:
        row = (
            await uow.session.execute(sa.select(code_attempts).where(code_attempts.c.key == key))
        ).one()
        # Only a digest is stored: no caller id in clear, and a fixed size.
        assert len(row.key) == 32 and caller.encode() not in row.key
        assert (row.failures, row.window_started_at) == (3, start)
        # Halfway through, the window is still open; at its end it is over.
        assert await CodeAttemptStore(uow.session).lock(key, start + WINDOW / 2, WINDOW) == 3
        assert await CodeAttemptStore(uow.session).lock(key, start + WINDOW, WINDOW) == 0
        await uow.commit()
    async with db.unit_of_work() as uow:
        row = (
            await uow.session.execute(sa.select(code_attempts).where(code_attempts.c.key == key))
        ).one()
        assert (row.failures, row.window_started_at) == (0, start + WINDOW)


async def test_the_sweep_forgets_ended_windows_only_in_bounded_batches(cart: Clients) -> None:
    db = cart.host.runtime.db  # type: ignore[union-attr]
    now = tomorrow()
    ended = [attempts_key(f"ended-{uuid.uuid4()}") for _ in range(3)]
    live = attempts_key(f"live-{uuid.uuid4()}")
    async with db.unit_of_work() as uow:
        store = CodeAttemptStore(uow.session)
        for key in ended:
            await store.lock(key, now - WINDOW - timedelta(seconds=1), WINDOW)
        await store.lock(live, now - WINDOW / 2, WINDOW)
        await uow.commit()
    forgotten = []
    for _ in range(3):
        async with db.unit_of_work() as uow:
            forgotten.append(await CodeAttemptStore(uow.session).forget_ended(now - WINDOW, 2))
            await uow.commit()
    assert forgotten == [2, 1, 0]
    async with db.unit_of_work() as uow:
        keys = set((await uow.session.execute(sa.select(code_attempts.c.key))).scalars())
    assert live in keys and not keys & set(ended)
