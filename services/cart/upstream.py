"""Outgoing calls: the catalog (titles, images, prices for a channel) and inventory
(availability), through the kit's channels (a deadline on every call, UNAVAILABLE retried).

The cart asks the catalog as an anonymous caller of the cart's channel (``x-tenpo-channel`` with the
proof the gateway would send, signed with the shared ``channel_assertion_secret``):
the catalog then answers exactly what a shopper on that channel may buy — published products
of the channel's assortment at the channel's prices — so "not offered on this channel" is
the catalog's own rule, not a copy of it here.

Both clients coalesce: a lookup of a key that a call in flight already covers waits for that
call instead of making another. Many carts adding the same SKU at once (a sale, a campaign
link) then cost the catalog and inventory one call, not one per cart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import grpc

from services.cart.domain.carts import CatalogItem
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.cache import TTLCache, ttl_cache
from tenpo.kit.errors import Unavailable

log = logging.getLogger(__name__)

#: The catalog's batch limit per call.
CATALOG_BATCH = 100
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InFlight(Generic[K, V]):
    """Calls in flight, by the keys they look up: ``lookup`` starts one call for the keys no
    call covers yet and waits for the calls that cover the others. A call runs as a task of
    its own, so a caller that gives up (its deadline, a cancelled RPC) does not cancel it for
    the others; every waiter gets the call's answer or its error. An answer of None (the
    other side did not answer) makes the whole lookup None."""

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[Mapping[K, V] | None]] = {}

    def forget(self, matches: Callable[[K], bool]) -> None:
        """Lookups from now on start a new call for the keys that match (the answer of a
        call in flight may predate a change)."""
        for key in [key for key in self._calls if matches(key)]:
            del self._calls[key]

    async def lookup(
        self, keys: Sequence[K], fetch: Callable[[list[K]], Awaitable[Mapping[K, V] | None]]
    ) -> dict[K, V] | None:
        """The answers for ``keys``; a key the answer leaves out is absent."""
        calls: dict[asyncio.Task[Mapping[K, V] | None], list[K]] = {}
        missing = []
        for key in dict.fromkeys(keys):
            running = self._calls.get(key)
            if running is None:
                missing.append(key)
            else:
                calls.setdefault(running, []).append(key)
        if missing:
            call = asyncio.ensure_future(fetch(missing))
            call.add_done_callback(_retrieve)
            for key in missing:
                self._calls[key] = call
            call.add_done_callback(lambda done: self._finished(missing, done))
            calls[call] = missing
        answer: dict[K, V] = {}
        for call, wanted in calls.items():
            fetched = await asyncio.shield(call)
            if fetched is None:
                return None
            answer.update((key, fetched[key]) for key in wanted if key in fetched)
        return answer

    def _finished(self, keys: list[K], call: asyncio.Task[Mapping[K, V] | None]) -> None:
        for key in keys:
            if self._calls.get(key) is call:
                del self._calls[key]


def _retrieve(call: asyncio.Future[Any]) -> None:
    """Every waiter may have given up on a call that then failed: its error was theirs to
    see, not worth an "exception never retrieved" warning."""
    if not call.cancelled():
        call.exception()


def channel_name(channel: int) -> str:
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]


class CatalogClient:
    """SKU → what the catalog offers on a channel now, cached per (channel, SKU) for
    ``cache_seconds`` — the staleness bound of a price or offer whose event has not reached
    this replica — and dropped at once by ``forget`` when the catalog's price and product
    events arrive."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        channel_assertion: ChannelAssertion,
        cache_size: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = catalog_grpc.CatalogServiceStub(channel)
        self._assertion = channel_assertion
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        # None marks "not offered on this channel": worth remembering too.
        self._cache: TTLCache[tuple[int, str], CatalogItem | None] = ttl_cache(
            cache_size, max(cache_seconds, 0.001), timer=clock
        )
        self._in_flight: InFlight[tuple[int, str], CatalogItem] = InFlight()
        #: The SKUs forgotten while each lookup in flight was waiting, by lookup: its answers
        #: for those may predate the change and are not cached (other SKUs' events do not
        #: matter). Keyed by the lookup's own token: sets compare by value, and two lookups'
        #: sets are often equal (both empty).
        self._watching: dict[object, set[str]] = {}

    def forget(self, skus: Sequence[str]) -> None:
        """Drop cached entries of ``skus`` on every channel (a price or product changed)."""
        wanted = set(skus)
        for key in [k for k in list(self._cache.keys()) if k[1] in wanted]:
            self._cache.pop(key, None)
        self._in_flight.forget(lambda key: key[1] in wanted)
        for forgotten in self._watching.values():
            forgotten.update(wanted)

    async def items(self, skus: Sequence[str], channel: int) -> dict[str, CatalogItem | None]:
        """Every SKU asked for: its item, or None when not offered on ``channel``. Raises
        Unavailable CATALOG_UNAVAILABLE when the catalog does not answer in time."""
        result: dict[str, CatalogItem | None] = {}
        missing: list[tuple[int, str]] = []
        for sku in dict.fromkeys(skus):
            key = (channel, sku)
            if self._cache_seconds and key in self._cache:
                result[sku] = self._cache[key]
            else:
                missing.append(key)
        if not missing:
            return result
        lookup = object()
        forgotten = self._watching[lookup] = set()
        try:
            fetched = await self._in_flight.lookup(missing, self._fetch_keys)
        finally:
            del self._watching[lookup]
        assert fetched is not None  # the catalog raises rather than answer nothing
        for key in missing:
            item = fetched.get(key)
            result[key[1]] = item
            if self._cache_seconds and key[1] not in forgotten:
                self._cache[key] = item
        return result

    async def _fetch_keys(self, keys: list[tuple[int, str]]) -> dict[tuple[int, str], CatalogItem]:
        """One coalesced call's worth: keys of one channel (a lookup asks for one), in the
        catalog's batches."""
        found: dict[tuple[int, str], CatalogItem] = {}
        channel = keys[0][0]
        skus = [sku for _, sku in keys]
        for start in range(0, len(skus), CATALOG_BATCH):
            fetched = await self._fetch(skus[start : start + CATALOG_BATCH], channel)
            found.update(((channel, sku), item) for sku, item in fetched.items())
        return found

    async def _fetch(self, skus: list[str], channel: int) -> dict[str, CatalogItem]:
        # The catalog honours the channel only with the proof the gateway would send.
        metadata = self._assertion.metadata(channel_name(channel))
        try:
            async with asyncio.timeout(self._timeout):
                variants, prices = await asyncio.gather(
                    self._stub.BatchGetVariants(
                        catalog_api.BatchGetVariantsRequest(skus=skus),
                        metadata=metadata,
                        timeout=self._timeout,
                    ),
                    self._stub.GetPrices(
                        catalog_api.GetPricesRequest(skus=skus, currency_code="JPY"),
                        metadata=metadata,
                        timeout=self._timeout,
                    ),
                )
                product_ids = sorted({v.product_id for v in variants.variants})
                products = (
                    await self._stub.BatchGetProducts(
                        catalog_api.BatchGetProductsRequest(ids=product_ids),
                        metadata=metadata,
                        timeout=self._timeout,
                    )
                    if product_ids
                    else catalog_api.BatchGetProductsResponse()
                )
        except TimeoutError:
            raise _unavailable("catalog") from None
        except grpc.aio.AioRpcError as error:
            if error.code() in _RETRYABLE:
                raise _unavailable("catalog") from None
            raise
        by_id = {p.id: p for p in products.products}
        by_sku = {p.sku: p for p in prices.prices}
        items: dict[str, CatalogItem] = {}
        for variant in variants.variants:
            product = by_id.get(variant.product_id)
            price = by_sku.get(variant.sku)
            # Invisible on the channel (not in its assortment, not published) or without a
            # price there: not something a shopper on this channel can buy.
            if product is None or price is None:
                continue
            regular = price.regular_amount.units if price.HasField("regular_amount") else None
            items[variant.sku] = CatalogItem(
                sku=variant.sku,
                product_id=product.id,
                title=product.title,
                image_url=product.media[0].url if product.media else "",
                unit_price=price.amount.units,
                regular_price=regular,
                tax_rate=round(price.tax_rate_percent),
                category_ids=frozenset(product.category_ids),
            )
        return items


class InventoryClient:
    """Available-to-promise per SKU at a store or across the network; None when inventory
    does not answer within the deadline (the cart then says UNKNOWN and goes on).

    Answers are kept for ``cache_seconds`` per (location, SKU): the cart shows availability
    up to that old (plus the call's own deadline), a product decision — the cart only
    informs, stock is promised by the order saga's reservation, which reads inventory's
    truth and refuses what is gone. "Inventory did not answer" is never kept."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_seconds: float,
        cache_seconds: float = 0.0,
        cache_size: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = inventory_grpc.InventoryServiceStub(channel)
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        self._cache: TTLCache[tuple[str | None, str], int] = ttl_cache(
            cache_size, max(cache_seconds, 0.001), timer=clock
        )
        self._in_flight: InFlight[tuple[str | None, str], int] = InFlight()

    async def available(
        self, skus: Sequence[str], location_id: str | None
    ) -> dict[str, int] | None:
        """Available-to-promise per SKU (0 for a SKU inventory does not know), from an answer
        at most ``cache_seconds`` old, a call in flight, or a call made now."""
        if not skus:
            return {}
        found: dict[str, int] = {}
        missing: list[tuple[str | None, str]] = []
        for sku in dict.fromkeys(skus):
            key = (location_id, sku)
            cached = self._cache.get(key) if self._cache_seconds else None
            if cached is None:
                missing.append(key)
            else:
                found[sku] = cached
        if missing:
            fetched = await self._in_flight.lookup(missing, self._fetch)
            if fetched is None:
                return None
            for key in missing:
                found[key[1]] = value = fetched.get(key, 0)
                if self._cache_seconds:
                    self._cache[key] = value
        return {sku: found[sku] for sku in skus}

    async def _fetch(
        self, keys: list[tuple[str | None, str]]
    ) -> dict[tuple[str | None, str], int] | None:
        location_id = keys[0][0]  # a lookup asks about one location
        request = inventory_api.GetAvailabilityRequest(
            skus=[sku for _, sku in keys], location_ids=[location_id] if location_id else []
        )
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._stub.GetAvailability(request, timeout=self._timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "TIMEOUT"
            log.warning("availability unknown: inventory did not answer", extra={"code": code})
            return None
        return {
            (location_id, a.sku): a.network_available_to_promise for a in response.availabilities
        }


def _unavailable(service: str) -> Unavailable:
    return Unavailable(
        f"the {service} service did not answer in time; retry shortly",
        reason=f"{service.upper()}_UNAVAILABLE",
    )
