"""Live loyalty balances: LoyaltyBalanceChanged events from every replica (the kit's
broadcast subscription, as inventory's availability stream), fanned out to local watchers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC

from services.customer.domain import loyalty as ld
from services.customer.store.loyalty import LoyaltyStore
from tenpo.customer.v1 import events_pb2
from tenpo.kit.db import Database
from tenpo.kit.events import EVENT_TYPE_HEADER

BALANCE_CHANGED = events_pb2.LoyaltyBalanceChanged.DESCRIPTOR.full_name
BALANCE_SUBJECT = "tenpo.customer.loyalty_balance_changed"


@dataclass(frozen=True)
class BalanceUpdate:
    snapshot: bool
    account: ld.Account


@dataclass(eq=False)
class _Watcher:
    customer_id: uuid.UUID
    latest: ld.Account | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class BalanceHub:
    """Keeps the newest account state per watched customer (a higher version wins, so
    events arriving twice or out of order change nothing) and wakes its watchers."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._watchers: dict[uuid.UUID, set[_Watcher]] = {}
        self._closed = asyncio.Event()

    async def on_event(self, subject: str, headers: Mapping[str, str], payload: bytes) -> None:
        if headers.get(EVENT_TYPE_HEADER) != BALANCE_CHANGED:
            return
        event = events_pb2.LoyaltyBalanceChanged.FromString(payload)
        try:
            customer_id = uuid.UUID(event.customer_id)
        except ValueError:
            return
        at = event.change_time.ToDatetime(tzinfo=UTC) if event.HasField("change_time") else None
        self.apply(
            ld.Account(
                customer_id,
                event.balance,
                event.reserved,
                event.tier or ld.DEFAULT_TIER,
                event.version,
                at,
                pending=event.pending,
            )
        )

    def apply(self, account: ld.Account) -> None:
        for watcher in self._watchers.get(account.customer_id, ()):
            if watcher.latest is None or watcher.latest.version < account.version:
                watcher.latest = account
                watcher.wake.set()

    async def watch(
        self, customer_id: uuid.UUID, *, max_seconds: float
    ) -> AsyncIterator[BalanceUpdate]:
        """The balance now, then each newer one, until the caller stops, the hub closes or
        ``max_seconds`` pass (clients reconnect)."""
        watcher = _Watcher(customer_id)
        self._watchers.setdefault(customer_id, set()).add(watcher)
        try:
            # Registered first, so a change racing the snapshot read is not lost: the
            # version decides which of the two is newer.
            async with self._db.unit_of_work() as uow:
                current = await LoyaltyStore(uow.session).get(customer_id)
            snapshot = current or ld.empty_account(customer_id)
            if watcher.latest is None or watcher.latest.version < snapshot.version:
                watcher.latest = snapshot
            sent = watcher.latest
            watcher.wake.clear()
            yield BalanceUpdate(True, sent)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_seconds
            while not self._closed.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                closed = asyncio.ensure_future(self._closed.wait())
                woken = asyncio.ensure_future(watcher.wake.wait())
                try:
                    await asyncio.wait(
                        {closed, woken}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    closed.cancel()
                    woken.cancel()
                watcher.wake.clear()
                latest = watcher.latest
                if latest is not None and latest.version > sent.version:
                    sent = latest
                    yield BalanceUpdate(False, latest)
        finally:
            watchers = self._watchers.get(customer_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[customer_id]

    @property
    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def close(self) -> None:
        self._closed.set()
