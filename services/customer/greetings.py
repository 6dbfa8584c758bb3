"""Live greetings for stores' welcome banners: CustomerCheckedIn events from every replica
(the kit's broadcast subscription, as the balance stream), turned into a greeting once per
replica and handed to that store's watchers.

The event carries ids only; the greeting (her given name, one suggestion) is looked up here,
only when a banner of that store is watching, and only for a customer who granted
personalization."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from services.customer.domain import greetings as gd
from tenpo.customer.v1 import events_pb2
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_TYPE_HEADER

CHECKED_IN = events_pb2.CustomerCheckedIn.DESCRIPTOR.full_name
CHECKED_IN_SUBJECT = event_subject(events_pb2.CustomerCheckedIn())
#: Greetings a slow banner may have waiting; older ones are dropped (she has walked on).
QUEUE_LIMIT = 16

Compose = Callable[[uuid.UUID, datetime], Awaitable[gd.Greeting | None]]


class GreetingHub:
    def __init__(self, compose: Compose, repeat_after: timedelta) -> None:
        self._compose = compose
        self._repeat_after = repeat_after
        self._watchers: dict[str, set[asyncio.Queue[gd.Greeting]]] = {}
        #: (store, customer) → when she was last greeted there: a second check-in at the
        #: same door moments later greets nobody again.
        self._greeted: dict[tuple[str, uuid.UUID], datetime] = {}
        self._closed = asyncio.Event()

    async def on_event(self, subject: str, headers: Mapping[str, str], payload: bytes) -> None:
        if headers.get(EVENT_TYPE_HEADER) != CHECKED_IN:
            return
        event = events_pb2.CustomerCheckedIn.FromString(payload)
        store = event.store_id
        if not self._watchers.get(store):
            return  # no banner of that store listens on this replica: nothing is looked up
        try:
            customer_id = uuid.UUID(event.customer_id)
        except ValueError:
            return
        at = (
            event.check_in_time.ToDatetime(tzinfo=UTC)
            if event.HasField("check_in_time")
            else datetime.now(UTC)
        )
        last = self._greeted.get((store, customer_id))
        if last is not None and at - last < self._repeat_after:
            return
        greeting = await self._compose(customer_id, at)
        if greeting is None:
            return  # unknown, erased, or no consent: nothing reaches the device
        self._greeted[(store, customer_id)] = at
        self._forget_before(at - self._repeat_after)
        for queue in self._watchers.get(store, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(greeting)

    def _forget_before(self, moment: datetime) -> None:
        for key in [k for k, when in self._greeted.items() if when < moment]:
            del self._greeted[key]

    async def watch(self, store_id: str, *, max_seconds: float) -> AsyncIterator[gd.Greeting]:
        """Greetings of check-ins at ``store_id`` from now on, until the caller stops, the
        hub closes or ``max_seconds`` pass (devices reconnect)."""
        queue: asyncio.Queue[gd.Greeting] = asyncio.Queue(QUEUE_LIMIT)
        self._watchers.setdefault(store_id, set()).add(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        try:
            while not self._closed.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                closed = asyncio.ensure_future(self._closed.wait())
                got = asyncio.ensure_future(queue.get())
                try:
                    done, _ = await asyncio.wait(
                        {closed, got}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    closed.cancel()
                    got.cancel()
                if got in done and not got.cancelled():
                    yield got.result()
        finally:
            watchers = self._watchers.get(store_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[store_id]

    @property
    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def close(self) -> None:
        self._closed.set()
