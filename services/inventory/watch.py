"""Live availability: StockChanged events from every replica, fanned out to local watchers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.inventory.store import StockStore
from tenpo.inventory.v1 import events_pb2
from tenpo.kit.db import Database
from tenpo.kit.events import EVENT_TYPE_HEADER

STOCK_CHANGED = events_pb2.StockChanged.DESCRIPTOR.full_name


@dataclass(frozen=True)
class Update:
    snapshot: bool
    sku: str
    available_to_promise: int
    at: datetime


@dataclass(eq=False)
class _Watcher:
    skus: frozenset[str]
    location_id: str  # empty: network-wide
    pending: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, sku: str, atp: int, at: datetime) -> None:
        # A slow reader sees the latest value per SKU rather than an unbounded backlog.
        self.pending[sku] = (atp, at)
        self.wake.set()


class AvailabilityHub:
    """Keeps the ATP of every watched SKU per location (newest version wins, so events that
    arrive out of order or twice change nothing) and wakes the watchers it concerns."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._watchers: dict[str, set[_Watcher]] = {}
        self._levels: dict[str, dict[str, tuple[int, int]]] = {}  # sku -> loc -> (version, atp)
        self._closed = asyncio.Event()

    async def on_event(self, subject: str, headers: Mapping[str, str], payload: bytes) -> None:
        if headers.get(EVENT_TYPE_HEADER) != STOCK_CHANGED:
            return
        event = events_pb2.StockChanged.FromString(payload)
        at = (
            event.change_time.ToDatetime(tzinfo=UTC)
            if event.HasField("change_time")
            else datetime.now(UTC)
        )
        self.apply(event.sku, event.location_id, event.version, event.available_to_promise, at)

    def apply(self, sku: str, location_id: str, version: int, atp: int, at: datetime) -> None:
        watchers = self._watchers.get(sku)
        if not watchers:
            return
        if not self._merge(sku, location_id, version, atp):
            return
        for watcher in watchers:
            if watcher.location_id == location_id:
                watcher.push(sku, atp, at)
            elif not watcher.location_id:
                watcher.push(sku, self._network(sku), at)

    def _merge(self, sku: str, location_id: str, version: int, atp: int) -> bool:
        levels = self._levels.setdefault(sku, {})
        current = levels.get(location_id)
        if current is not None and current[0] >= version:
            return False
        levels[location_id] = (version, atp)
        return True

    def _network(self, sku: str) -> int:
        return sum(atp for _, atp in self._levels.get(sku, {}).values())

    def _value(self, sku: str, location_id: str) -> int:
        if not location_id:
            return self._network(sku)
        return self._levels.get(sku, {}).get(location_id, (0, 0))[1]

    async def watch(
        self, skus: Sequence[str], location_id: str, *, max_seconds: float
    ) -> AsyncIterator[Update]:
        """A snapshot of every SKU, then each change, until the caller stops, the hub
        closes or ``max_seconds`` pass (clients reconnect, which also rebalances them)."""
        watcher = _Watcher(frozenset(skus), location_id)
        for sku in watcher.skus:
            self._watchers.setdefault(sku, set()).add(watcher)
        try:
            # Registered first, so a change racing the snapshot read is not lost: the
            # version decides which of the two is newer.
            async with self._db.unit_of_work() as uow:
                levels = await StockStore(uow.session).levels_for_skus(
                    list(watcher.skus), [location_id] if location_id else []
                )
            for level in levels:
                self._merge(level.sku, level.location_id, level.version, level.available_to_promise)
            watcher.pending.clear()
            now = datetime.now(UTC)
            for sku in skus:
                value = self._value(sku, location_id)
                watcher.sent[sku] = value
                yield Update(True, sku, value, now)
            deadline = asyncio.get_running_loop().time() + max_seconds
            while not self._closed.is_set():
                remaining = deadline - asyncio.get_running_loop().time()
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
                changes, watcher.pending = watcher.pending, {}
                for sku, (atp, at) in changes.items():
                    if watcher.sent.get(sku) == atp:
                        continue
                    watcher.sent[sku] = atp
                    yield Update(False, sku, atp, at)
        finally:
            for sku in watcher.skus:
                remaining_watchers = self._watchers.get(sku)
                if remaining_watchers is not None:
                    remaining_watchers.discard(watcher)
                    if not remaining_watchers:
                        del self._watchers[sku]
                        self._levels.pop(sku, None)

    @property
    def watcher_count(self) -> int:
        return len({w for ws in self._watchers.values() for w in ws})

    def close(self) -> None:
        self._closed.set()
