"""Outgoing calls: the catalog (titles, images, prices for a channel) and inventory
(availability), through the kit's channels (a deadline on every call, UNAVAILABLE retried).

The cart asks the catalog as an anonymous caller of the cart's channel (``x-tenpo-channel`` with the
proof the gateway would send, signed with the shared ``channel_assertion_secret``):
the catalog then answers exactly what a shopper on that channel may buy — published products
of the channel's assortment at the channel's prices — so "not offered on this channel" is
the catalog's own rule, not a copy of it here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

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


def channel_name(channel: int) -> str:
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]


class CatalogClient:
    """SKU → what the catalog offers on a channel now, cached briefly per (channel, SKU)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        channel_assertion: ChannelAssertion,
        cache_size: int = 50_000,
    ) -> None:
        self._stub = catalog_grpc.CatalogServiceStub(channel)
        self._assertion = channel_assertion
        self._timeout = timeout_seconds
        self._cache_seconds = cache_seconds
        # None marks "not offered on this channel": worth remembering too.
        self._cache: TTLCache[tuple[int, str], CatalogItem | None] = ttl_cache(
            cache_size, max(cache_seconds, 0.001)
        )

    def forget(self, skus: Sequence[str]) -> None:
        """Drop cached entries of ``skus`` on every channel (a price or product changed)."""
        wanted = set(skus)
        for key in [k for k in list(self._cache.keys()) if k[1] in wanted]:
            self._cache.pop(key, None)

    async def items(self, skus: Sequence[str], channel: int) -> dict[str, CatalogItem | None]:
        """Every SKU asked for: its item, or None when not offered on ``channel``. Raises
        Unavailable CATALOG_UNAVAILABLE when the catalog does not answer in time."""
        result: dict[str, CatalogItem | None] = {}
        missing: list[str] = []
        for sku in dict.fromkeys(skus):
            key = (channel, sku)
            if self._cache_seconds and key in self._cache:
                result[sku] = self._cache[key]
            else:
                missing.append(sku)
        for start in range(0, len(missing), CATALOG_BATCH):
            batch = missing[start : start + CATALOG_BATCH]
            fetched = await self._fetch(batch, channel)
            for sku in batch:
                item = fetched.get(sku)
                result[sku] = item
                if self._cache_seconds:
                    self._cache[(channel, sku)] = item
        return result

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
    does not answer within the deadline (the cart then says UNKNOWN and goes on)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_seconds: float) -> None:
        self._stub = inventory_grpc.InventoryServiceStub(channel)
        self._timeout = timeout_seconds

    async def available(
        self, skus: Sequence[str], location_id: str | None
    ) -> dict[str, int] | None:
        if not skus:
            return {}
        request = inventory_api.GetAvailabilityRequest(
            skus=list(dict.fromkeys(skus)), location_ids=[location_id] if location_id else []
        )
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._stub.GetAvailability(request, timeout=self._timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "TIMEOUT"
            log.warning("availability unknown: inventory did not answer", extra={"code": code})
            return None
        return {a.sku: a.network_available_to_promise for a in response.availabilities}


def _unavailable(service: str) -> Unavailable:
    return Unavailable(
        f"the {service} service did not answer in time; retry shortly",
        reason=f"{service.upper()}_UNAVAILABLE",
    )
