"""Abandonment and expiry sweeps: durable (state in the carts table), safe with replicas.

A cart of a customer, or a guest cart with a contact e-mail, that has lines and was not
changed for ``idle`` is announced once with CartAbandoned; ``abandoned_at`` records it, and
only a later change (a new ``last_activity_at``) makes the cart eligible again. Replicas
sweeping at once take different carts (``FOR UPDATE SKIP LOCKED``), and the announcement
and the mark commit together with the outbox row, so a crash announces nothing or once.

The same round deletes the wrong-code counters whose window ended (``code_attempts``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.cart.events import abandoned_event
from services.cart.store.carts import CartStore
from services.cart.store.code_attempts import CodeAttemptStore
from services.cart.usecases.carts import Carts
from tenpo.kit.db import Database

log = logging.getLogger(__name__)


class Abandonment:
    def __init__(
        self,
        db: Database,
        carts: Carts,
        *,
        idle: timedelta,
        guest_expiry: timedelta,
        code_attempt_window: timedelta = timedelta(minutes=15),
        batch_size: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.carts = carts
        self.idle = idle
        self.guest_expiry = guest_expiry
        self.code_attempt_window = code_attempt_window
        self.batch_size = batch_size
        self.clock = clock
        #: The last round found a full batch of something: the next one starts at once.
        self.full = False

    async def sweep_once(self) -> tuple[int, int]:
        """One round: (carts announced as abandoned, guest carts expired); the ended
        wrong-code windows go in a transaction of their own."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            store = CartStore(uow.session)
            found = await store.claim_abandoned(now - self.idle, self.batch_size)
            for cart in found:
                view = await self.carts.view(uow.session, cart)
                uow.add_event(abandoned_event(cart, view.totals.total))
            await store.mark_abandoned([cart.id for cart in found])
            expired = await store.expire_guest_carts(now - self.guest_expiry, now, self.batch_size)
            await uow.commit()
        async with self.db.unit_of_work() as uow:
            forgotten = await CodeAttemptStore(uow.session).forget_ended(
                now - self.code_attempt_window, self.batch_size
            )
            await uow.commit()
        if found or expired or forgotten:
            log.info(
                "cart sweep",
                extra={"abandoned": len(found), "expired": expired, "code_windows": forgotten},
            )
        self.full = max(len(found), expired, forgotten) >= self.batch_size
        return len(found), expired

    async def run(self, interval_seconds: float) -> None:
        while True:
            await self.sweep_once()
            await asyncio.sleep(0 if self.full else interval_seconds)
