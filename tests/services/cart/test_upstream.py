"""The cart's catalog and inventory clients coalesce: lookups of a key that a call in flight
covers wait for that call (one call for many carts adding the same SKU at once), a caller
that gives up does not cancel it for the others, and a price event detaches it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from services.cart.upstream import CatalogClient, InFlight, InventoryClient
from tenpo.common.v1 import common_pb2
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.errors import Unavailable
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.services.cart.conftest import Upstreams, new_sku

WEB = common_pb2.CHANNEL_WEB


@pytest_asyncio.fixture
async def channel(upstreams: Upstreams) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(upstreams.catalog_target) as opened:
        yield opened


def catalog_client(channel: grpc.aio.Channel, cache_seconds: float = 0) -> CatalogClient:
    return CatalogClient(
        channel,
        timeout_seconds=10,
        cache_seconds=cache_seconds,
        channel_assertion=ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET),
    )


async def _until(condition: object) -> None:
    for _ in range(1000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake never saw the call")


async def test_concurrent_lookups_of_one_sku_make_one_catalog_call(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1980)
    upstreams.catalog.gate = asyncio.Event()
    client = catalog_client(channel)
    lookups = [asyncio.ensure_future(client.items([sku], WEB)) for _ in range(10)]
    await _until(lambda: upstreams.catalog.calls == 1)
    upstreams.catalog.gate.set()
    answers = await asyncio.gather(*lookups)
    assert upstreams.catalog.calls == 1
    assert {a[sku].unit_price for a in answers if a[sku] is not None} == {1980}
    assert all(a[sku] is not None for a in answers)
    # Nothing in flight any more (and no cache here): the next lookup asks again.
    await client.items([sku], WEB)
    assert upstreams.catalog.calls == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_call_for_the_others(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 500)
    upstreams.catalog.gate = asyncio.Event()
    client = catalog_client(channel)
    first = asyncio.ensure_future(client.items([sku], WEB))
    second = asyncio.ensure_future(client.items([sku], WEB))
    await _until(lambda: upstreams.catalog.calls == 1)
    first.cancel()  # the first caller's RPC was cancelled: its call goes on for the second
    upstreams.catalog.gate.set()
    answer = await second
    assert answer[sku] is not None and answer[sku].unit_price == 500
    assert first.cancelled()
    assert upstreams.catalog.calls == 1


async def test_a_price_event_detaches_the_call_in_flight_and_its_answer_is_not_cached(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1000)
    upstreams.catalog.gate = asyncio.Event()
    client = catalog_client(channel, cache_seconds=60)
    before = asyncio.ensure_future(client.items([sku], WEB))
    await _until(lambda: upstreams.catalog.calls == 1)
    upstreams.catalog.add(sku, 800)  # the price changes; its event reaches the cart
    client.forget([sku])
    after = asyncio.ensure_future(client.items([sku], WEB))
    await _until(lambda: upstreams.catalog.calls == 2)  # a call of its own, not the old one
    upstreams.catalog.gate.set()
    await before
    assert (await after)[sku].unit_price == 800  # type: ignore[union-attr]
    # The answer of the call begun before the event was not cached; the new one was.
    assert (await client.items([sku], WEB))[sku].unit_price == 800  # type: ignore[union-attr]
    assert upstreams.catalog.calls == 2


async def test_another_skus_price_event_during_a_lookup_keeps_its_answer_cached(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    """Price events for other SKUs arrive all the time (a shared stream): a lookup that
    one of them overtakes still caches its answer."""
    sku, other = new_sku(), new_sku()
    upstreams.catalog.add(sku, 1000)
    upstreams.catalog.gate = asyncio.Event()
    client = catalog_client(channel, cache_seconds=60)
    looking = asyncio.ensure_future(client.items([sku], WEB))
    await _until(lambda: upstreams.catalog.calls == 1)
    client.forget([other])
    upstreams.catalog.gate.set()
    assert (await looking)[sku].unit_price == 1000  # type: ignore[union-attr]
    upstreams.catalog.add(sku, 900)  # no event for it: the cached answer stands
    assert (await client.items([sku], WEB))[sku].unit_price == 1000  # type: ignore[union-attr]
    assert upstreams.catalog.calls == 1


async def test_a_lookup_given_up_leaves_the_others_watching_for_price_events(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    """Two lookups in flight watch for price events with sets that are equal while empty:
    the one given up must stop its own watch, not the other's (the other then missed its
    SKU's event and, finishing, found its watch gone: INTERNAL, seen in CI)."""
    sku, other = new_sku(), new_sku()
    upstreams.catalog.add(sku, 1000)
    upstreams.catalog.add(other, 2000)
    upstreams.catalog.gate = asyncio.Event()
    client = catalog_client(channel, cache_seconds=60)
    first = asyncio.ensure_future(client.items([sku], WEB))
    await _until(lambda: upstreams.catalog.calls == 1)
    second = asyncio.ensure_future(client.items([other], WEB))
    await _until(lambda: upstreams.catalog.calls == 2)
    second.cancel()  # its caller gives up
    with contextlib.suppress(asyncio.CancelledError):
        await second
    upstreams.catalog.add(sku, 900)  # the price changes; its event reaches the cart
    client.forget([sku])
    upstreams.catalog.gate.set()
    await first  # answered from the call begun before the event: not to be kept
    assert (await client.items([sku], WEB))[sku].unit_price == 900  # type: ignore[union-attr]


async def test_the_catalog_down_fails_every_waiter_unavailable() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as nowhere:
        client = CatalogClient(
            nowhere,
            timeout_seconds=0.5,
            cache_seconds=0,
            channel_assertion=ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET),
        )
        outcomes = await asyncio.gather(
            *(client.items(["SKU-1"], WEB) for _ in range(3)), return_exceptions=True
        )
    assert all(isinstance(o, Unavailable) for o in outcomes)
    assert {o.reason for o in outcomes if isinstance(o, Unavailable)} == {"CATALOG_UNAVAILABLE"}


async def test_concurrent_availability_checks_share_one_inventory_call(
    upstreams: Upstreams,
) -> None:
    sku, other = new_sku(), new_sku()
    upstreams.inventory.stock |= {sku: 7, other: 2}
    upstreams.inventory.gate = asyncio.Event()
    async with grpc.aio.insecure_channel(upstreams.inventory_target) as channel:
        client = InventoryClient(channel, timeout_seconds=10)
        first = asyncio.ensure_future(client.available([sku], None))
        await _until(lambda: upstreams.inventory.calls == 1)
        # One SKU in flight, one not: a second call for the missing one only.
        both = asyncio.ensure_future(client.available([sku, other], None))
        await _until(lambda: upstreams.inventory.calls == 2)
        upstreams.inventory.gate.set()
        assert await first == {sku: 7}
        assert await both == {sku: 7, other: 2}
        # At a store it is another question: not covered by the network-wide call.
        assert await client.available([sku], "store-1") == {sku: 7}
    assert upstreams.inventory.calls == 3


async def test_inventory_down_makes_every_waiter_unknown(upstreams: Upstreams) -> None:
    upstreams.inventory.down = True
    async with grpc.aio.insecure_channel(upstreams.inventory_target) as channel:
        client = InventoryClient(channel, timeout_seconds=5)
        answers = await asyncio.gather(*(client.available(["SKU-1"], None) for _ in range(3)))
    assert answers == [None, None, None]


async def test_in_flight_passes_errors_to_every_waiter() -> None:
    calls = 0
    release = asyncio.Event()

    async def fetch(keys: list[str]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("boom")

    in_flight: InFlight[str, int] = InFlight()
    waiters = [asyncio.ensure_future(in_flight.lookup(["a"], fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert calls == 1
    assert [type(o) for o in outcomes] == [RuntimeError] * 3
    # Nothing stays in flight after a failure: the next lookup makes a call of its own.
    with pytest.raises(RuntimeError):
        await in_flight.lookup(["a"], fetch)
    assert calls == 2


class Clock:
    """A monotonic clock the test steps: staleness bounds proven without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_cached_price_is_reused_until_its_ttl_and_a_price_event_drops_it_at_once(
    upstreams: Upstreams, channel: grpc.aio.Channel
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1000)
    clock = Clock()
    client = CatalogClient(
        channel,
        timeout_seconds=10,
        cache_seconds=30,
        channel_assertion=ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET),
        clock=clock,
    )
    assert (await client.items([sku], WEB))[sku].unit_price == 1000  # type: ignore[union-attr]
    upstreams.catalog.add(sku, 900)  # changed, and no event reached this replica
    clock.now += 29.9
    assert (await client.items([sku], WEB))[sku].unit_price == 1000  # type: ignore[union-attr]
    assert upstreams.catalog.calls == 1
    clock.now += 0.1  # the TTL is the staleness bound: the new price is seen after it
    assert (await client.items([sku], WEB))[sku].unit_price == 900  # type: ignore[union-attr]
    assert upstreams.catalog.calls == 2
    upstreams.catalog.add(sku, 800)
    client.forget([sku])  # the price event: seen at once, not after the TTL
    assert (await client.items([sku], WEB))[sku].unit_price == 800  # type: ignore[union-attr]
    assert upstreams.catalog.calls == 3


async def test_availability_is_reused_for_its_ttl_per_sku_and_location(
    upstreams: Upstreams,
) -> None:
    sku, other = new_sku(), new_sku()
    upstreams.inventory.stock |= {sku: 5, other: 3}
    clock = Clock()
    async with grpc.aio.insecure_channel(upstreams.inventory_target) as channel:
        client = InventoryClient(channel, timeout_seconds=10, cache_seconds=1.0, clock=clock)
        assert await client.available([sku], None) == {sku: 5}
        upstreams.inventory.stock[sku] = 0  # sold out elsewhere
        clock.now += 0.9
        # Within the second: the answer kept (the saga's reservation will refuse it).
        assert await client.available([sku, other], None) == {sku: 5, other: 3}
        assert upstreams.inventory.calls == 2  # one more call, for the SKU not kept only
        # Another location is another question.
        assert await client.available([sku], "store-1") == {sku: 0}
        assert upstreams.inventory.calls == 3
        clock.now += 0.1  # a second after the first answer: asked again
        assert await client.available([sku], None) == {sku: 0}
        assert upstreams.inventory.calls == 4


async def test_inventory_not_answering_is_never_kept(upstreams: Upstreams) -> None:
    sku = new_sku()
    upstreams.inventory.stock[sku] = 4
    upstreams.inventory.down = True
    async with grpc.aio.insecure_channel(upstreams.inventory_target) as channel:
        client = InventoryClient(channel, timeout_seconds=5, cache_seconds=60, clock=Clock())
        assert await client.available([sku], None) is None
        upstreams.inventory.down = False
        assert await client.available([sku], None) == {sku: 4}
