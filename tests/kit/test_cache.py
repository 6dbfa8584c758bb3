"""The kit's caches: TTL and bound for keyed entries, shared reloads for a whole value."""

from __future__ import annotations

import asyncio

import pytest

from tenpo.kit.cache import RefreshingValue, bounded_cache, ttl_cache


def test_ttl_cache_drops_the_least_recently_used_entry_when_full() -> None:
    cache = ttl_cache(maxsize=2, ttl_seconds=60)
    cache["a"] = 1
    cache["b"] = 2
    assert cache["a"] == 1  # a is now the most recently used
    cache["c"] = 3
    assert "b" not in cache
    assert set(cache) == {"a", "c"}


def test_bounded_cache_by_total_size_drops_the_least_recently_used() -> None:
    cache = bounded_cache(10, getsizeof=len)
    cache["a"] = b"aaaa"
    cache["b"] = b"bbbb"
    assert cache["a"] == b"aaaa"  # a is now the most recently used
    cache["c"] = b"cccc"  # 12 bytes > 10: b goes
    assert set(cache) == {"a", "c"}
    assert cache.currsize == 8
    with pytest.raises(ValueError, match="too large"):
        cache["d"] = b"d" * 11


def test_ttl_cache_forgets_expired_entries() -> None:
    cache = ttl_cache(maxsize=10, ttl_seconds=0.0)
    cache["a"] = 1
    assert cache.get("a") is None


def test_ttl_cache_keeps_an_entry_until_its_ttl_on_the_given_clock() -> None:
    now = [100.0]
    cache = ttl_cache(maxsize=10, ttl_seconds=1.0, timer=lambda: now[0])
    cache["a"] = 1
    now[0] = 100.9
    assert cache.get("a") == 1
    now[0] = 101.0
    assert cache.get("a") is None


async def test_refreshing_value_loads_once_for_concurrent_readers_and_after_invalidate() -> None:
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return loads

    value = RefreshingValue(load, ttl_seconds=60)
    assert await asyncio.gather(*(value.get() for _ in range(10))) == [1] * 10
    assert loads == 1
    value.invalidate()
    assert await value.get() == 2


async def test_refreshing_value_reloads_when_stale() -> None:
    calls: list[int] = []

    async def load() -> int:
        calls.append(1)
        return len(calls)

    value = RefreshingValue(load, ttl_seconds=0.0)
    assert await value.get() == 1
    assert await value.get() == 2


async def test_a_load_under_way_when_invalidated_is_not_kept_as_fresh() -> None:
    """A writer invalidates while a reader's load is reading the old rows: the writer's next
    read must load again, not get the old rows for a whole TTL."""
    table = ["old"]
    reading = asyncio.Event()
    release = asyncio.Event()

    async def load() -> str:
        seen = table[0]
        reading.set()
        await release.wait()
        return seen

    value = RefreshingValue(load, ttl_seconds=60)
    earlier = asyncio.create_task(value.get())
    await reading.wait()
    table[0] = "new"  # the writer commits and invalidates while the load is under way
    value.invalidate()
    release.set()
    assert await earlier == "old"  # the reader that started before the write
    assert await value.get() == "new"
