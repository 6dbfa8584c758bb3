"""The reservation batcher's coalescing, with a stand-in for the database step: which
requests share a transaction, and that an idle service never waits for company."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from services.inventory import domain as d
from services.inventory.usecases.batcher import ReservationBatcher, batch_failure
from tenpo.kit.errors import InvalidArgument, Unavailable


def request(n: int, sku: str = "HOT") -> d.ReservationRequest:
    return d.ReservationRequest(
        owner=f"carts/{n}",
        lines=(d.Line(sku, 1, "tokyo-shibuya"),),
        ttl=timedelta(minutes=15),
        key=f"r-{n}",
        fingerprint=b"",
        actor="test",
    )


class RecordingInventory:
    """Records each batch; the first one waits until ``release`` is set, which holds the
    hot SKU while the test queues more requests."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def reserve_batch(
        self, requests: Sequence[d.ReservationRequest], traces: Any = None
    ) -> list[Any]:
        self.batches.append([r.owner for r in requests])
        self.started.set()
        if len(self.batches) == 1:
            await self.release.wait()
        return [r.owner for r in requests]


def batcher(inventory: RecordingInventory, **options: Any) -> ReservationBatcher:
    return ReservationBatcher(inventory, **options)  # type: ignore[arg-type]


async def test_an_idle_service_does_not_wait_for_company() -> None:
    inventory = RecordingInventory()
    inventory.release.set()
    coalescer = batcher(inventory, workers=2, max_batch=500, target=32, linger=60.0)
    # With a minute of linger, only the idle path answers within the timeout.
    assert await asyncio.wait_for(coalescer.submit(request(1)), 5) == "carts/1"
    assert await asyncio.wait_for(coalescer.submit(request(2)), 5) == "carts/2"
    assert inventory.batches == [["carts/1"], ["carts/2"]]
    await coalescer.close()


async def test_requests_queued_behind_a_busy_sku_share_the_next_transaction() -> None:
    inventory = RecordingInventory()
    coalescer = batcher(inventory, workers=2, max_batch=500, target=8, linger=60.0)
    first = asyncio.ensure_future(coalescer.submit(request(0)))
    await inventory.started.wait()
    queued = [asyncio.ensure_future(coalescer.submit(request(n))) for n in range(1, 11)]
    await asyncio.sleep(0)
    inventory.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *queued), 5)
    assert results == [f"carts/{n}" for n in range(11)]
    # The second worker may not take the hot SKU while the first holds it; afterwards all
    # ten waiting requests (more than the target) go together, in arrival order.
    assert inventory.batches == [["carts/0"], [f"carts/{n}" for n in range(1, 11)]]
    await coalescer.close()


async def test_under_load_a_batch_waits_to_fill_up_to_the_target() -> None:
    inventory = RecordingInventory()
    coalescer = batcher(inventory, workers=1, max_batch=500, target=6, linger=60.0)
    first = asyncio.ensure_future(coalescer.submit(request(0)))
    await inventory.started.wait()
    early = [asyncio.ensure_future(coalescer.submit(request(n))) for n in range(1, 3)]
    inventory.release.set()
    await asyncio.sleep(0.05)  # the worker is back, finds two waiting, and lingers
    assert len(inventory.batches) == 1
    late = [asyncio.ensure_future(coalescer.submit(request(n))) for n in range(3, 7)]
    await asyncio.wait_for(asyncio.gather(first, *early, *late), 5)
    assert inventory.batches[1] == [f"carts/{n}" for n in range(1, 7)]
    await coalescer.close()


async def test_other_skus_are_not_held_up_by_a_busy_one() -> None:
    inventory = RecordingInventory()
    coalescer = batcher(inventory, workers=2, max_batch=500, target=1, linger=0.0)
    hot = asyncio.ensure_future(coalescer.submit(request(0, "HOT")))
    await inventory.started.wait()
    other = await asyncio.wait_for(coalescer.submit(request(1, "COLD")), 5)
    assert other == "carts/1"
    assert not hot.done()
    inventory.release.set()
    assert await asyncio.wait_for(hot, 5) == "carts/0"
    await coalescer.close()


async def test_requests_sharing_an_idempotency_key_never_share_a_batch() -> None:
    inventory = RecordingInventory()
    coalescer = batcher(inventory, workers=2, max_batch=500, target=1, linger=0.0)
    first = asyncio.ensure_future(coalescer.submit(request(0)))
    await inventory.started.wait()
    # Two retries of request 1 (one key) and an unrelated request on the same SKU.
    queued = [
        asyncio.ensure_future(coalescer.submit(request(1))),
        asyncio.ensure_future(coalescer.submit(request(1))),
        asyncio.ensure_future(coalescer.submit(request(2))),
    ]
    await asyncio.sleep(0)
    inventory.release.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), 5)
    # The repeat waits for the next round, and what queued behind it keeps its place.
    assert inventory.batches == [["carts/0"], ["carts/1"], ["carts/1", "carts/2"]]
    await coalescer.close()


def test_a_failed_batch_tells_each_request_what_it_can_do() -> None:
    # Found from outside: a value PostgreSQL refused (a NUL) was answered UNAVAILABLE, so the
    # client retried a request that could never succeed.
    refused = asyncpg.CharacterNotInRepertoireError("invalid byte sequence: 0x00")
    alone = batch_failure(refused, 1)
    assert isinstance(alone, InvalidArgument) and alone.reason == "VALUE_NOT_STORABLE"
    # In company, the culprit is unknown: nobody is blamed, everybody retries.
    shared = batch_failure(refused, 3)
    assert isinstance(shared, Unavailable) and shared.reason == "RESERVATION_RETRY"
    down = batch_failure(asyncpg.InterfaceError("connection is closed"), 3)
    assert isinstance(down, Unavailable) and down.reason == "DATABASE_UNAVAILABLE"
    bug = batch_failure(RuntimeError("a bug"), 1)
    assert isinstance(bug, Unavailable) and bug.reason == "RESERVATION_RETRY"
