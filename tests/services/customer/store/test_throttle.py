"""The sign-in counters under concurrency, on real PostgreSQL: a counter row deleted by a
successful sign-in while another attempt waits for its lock must not fail that attempt."""

from __future__ import annotations

import asyncio
import hashlib

import sqlalchemy as sa

from services.customer.models import sign_in_attempts
from services.customer.store.throttle import ThrottleStore
from tests.services.customer.conftest import Service


async def test_an_attempt_waiting_on_a_row_that_a_sign_in_deletes_gets_a_fresh_row(
    service: Service,
) -> None:
    # Found from outside: concurrent sign-ins of one customer answered INTERNAL
    # (NoResultFound) when a successful one cleared the counters under a waiting attempt.
    key = hashlib.sha256(b"throttle-race").digest()
    db = service.db
    async with db.unit_of_work() as uow:
        await uow.session.execute(sa.insert(sign_in_attempts).values(key=key, failures=2))
        await uow.commit()
    async with db.unit_of_work() as holder:
        # A successful sign-in: holds the row, then deletes it.
        held = await ThrottleStore(holder.session).lock_row(key)
        assert held.failures == 2

        async def waiting_attempt() -> int:
            async with db.unit_of_work() as uow:
                attempts = await ThrottleStore(uow.session).lock_row(key)
                await uow.commit()
                return attempts.failures

        waiter = asyncio.create_task(waiting_attempt())
        # The waiter is queued behind the row lock (it cannot finish while we hold it).
        done, _ = await asyncio.wait({waiter}, timeout=0.5)
        assert not done
        await ThrottleStore(holder.session).clear(key)
        await holder.commit()
    assert await waiter == 0  # a fresh counter, not an error
    async with db.unit_of_work() as uow:
        assert await ThrottleStore(uow.session).get(key) is not None
