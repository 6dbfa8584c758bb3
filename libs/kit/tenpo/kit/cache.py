"""Caches for the whole project, on cachetools: keyed entries with a TTL and a bound, keyed
entries with only a bound (by count or by total size), and a whole table re-read at most
every so often. One shape each, so no module grows its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import LRUCache, TLRUCache, TTLCache

__all__ = ["LRUCache", "RefreshingValue", "TLRUCache", "TTLCache", "bounded_cache", "ttl_cache"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


def ttl_cache(
    maxsize: int, ttl_seconds: float, *, timer: Callable[[], float] = time.monotonic
) -> TTLCache[K, V]:
    """A bounded mapping whose entries vanish ``ttl_seconds`` after they were set; the least
    recently used entry leaves first when it is full. Clock: ``timer`` (seconds,
    ``time.monotonic`` unless a test steps a clock of its own to prove a staleness bound)."""
    return TTLCache(maxsize=maxsize, ttl=ttl_seconds, timer=timer)


def bounded_cache(maxsize: int, *, getsizeof: Callable[[V], float] | None = None) -> LRUCache[K, V]:
    """A bounded mapping whose entries never expire (for values that cannot go stale, e.g.
    a pure function of the key); the least recently used entry leaves first when it is
    full. With ``getsizeof``, ``maxsize`` bounds the total size (bytes, say), not the count;
    setting an entry larger than ``maxsize`` raises ValueError."""
    return LRUCache(maxsize=maxsize, getsizeof=getsizeof)


class RefreshingValue(Generic[T]):
    """One value loaded by ``load`` and re-read at most every ``ttl_seconds`` (or after
    ``invalidate``). Concurrent readers of a stale value share one load. A load that was
    under way when ``invalidate`` was called may have read the old data: its value is handed
    to the readers that were waiting for it but is not kept as fresh, so the next reader
    loads again."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl_seconds: float) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._value: T | None = None
        self._loaded_at: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._loaded_at is not None and time.monotonic() - self._loaded_at < self._ttl

    async def get(self) -> T:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    generation = self._generation
                    self._value = await self._load()
                    if generation == self._generation:
                        self._loaded_at = time.monotonic()
        return self._value  # type: ignore[return-value]

    def invalidate(self) -> None:
        self._generation += 1
        self._loaded_at = None
