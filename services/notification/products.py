"""Products for journey messages, as ports: a product she looked at (the customer service's
interaction timeline, as this service with its own token) and products that complement
others (the catalog's related products, asked as an anonymous web shopper, so a mail only
recommends what the web shop sells). Every call has a deadline; a service that does not
answer is ``Unavailable`` (the journey step is taken again later); finding nothing is an
empty answer, not an error."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import grpc

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.customer.v1 import interaction_service_pb2 as interaction_api
from tenpo.customer.v1 import interaction_service_pb2_grpc as interaction_grpc
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import TokenSource

log = logging.getLogger(__name__)

#: Interactions that say she looked at a product (a shelf pick-up, a mirror try-on).
LOOKED_AT = frozenset(
    {interaction_api.INTERACTION_KIND_SHELF_SCAN, interaction_api.INTERACTION_KIND_MIRROR_TRY_ON}
)
#: Relations that complement a product (an up-sell is an alternative, not a complement).
COMPLEMENTS = (
    catalog_pb.RELATION_TYPE_CROSS_SELL,
    catalog_pb.RELATION_TYPE_ACCESSORY,
    catalog_pb.RELATION_TYPE_GOES_WITH,
)
#: How far back her timeline is read for a product she looked at.
TIMELINE_PAGE = 50
#: SKUs of an order looked at for complements.
MAX_SOURCE_SKUS = 20
#: The anonymous channel the catalog is asked as.
SHOP_CHANNEL = "WEB"
_NOT_FOUND = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT})

T = TypeVar("T")


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    #: Its variants' SKUs (what a personal code for this product may be limited to).
    skus: tuple[str, ...] = ()


class ProductFinder(Protocol):
    async def viewed(self, customer_id: str, language: str) -> Product | None:
        """The product of her newest shelf scan or mirror try-on; None when there is none."""
        ...

    async def complementary(self, skus: Sequence[str], limit: int, language: str) -> list[Product]:
        """Up to ``limit`` products related to the products of ``skus`` (not those products
        themselves), in the catalog's order."""
        ...


class GrpcProducts:
    """``customer`` or ``catalog`` None: not configured (a call is Unavailable)."""

    def __init__(
        self,
        customer: grpc.aio.Channel | None,
        catalog: grpc.aio.Channel | None,
        tokens: TokenSource,
        assertion: ChannelAssertion,
        timeout_seconds: float,
    ) -> None:
        self._timeline = interaction_grpc.InteractionServiceStub(customer) if customer else None
        self._catalog = catalog_grpc.CatalogServiceStub(catalog) if catalog else None
        self._tokens = tokens
        self._assertion = assertion
        self._timeout = timeout_seconds

    async def _call(self, service: str, call: Awaitable[T]) -> T | None:
        """The answer; None for "not found"; Unavailable for anything else."""
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            if error.code() in _NOT_FOUND:
                return None
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()
            log.warning(
                "product lookup failed", extra={"service": service, "code": error.code().name}
            )
            raise Unavailable(
                f"the {service} service did not answer", reason=f"{service.upper()}_UNAVAILABLE"
            ) from None

    def _catalog_stub(self) -> Any:
        if self._catalog is None:
            raise Unavailable("no catalog is configured", reason="CATALOG_NOT_CONFIGURED")
        return self._catalog

    def _shopper(self) -> tuple[tuple[str, str], ...]:
        return self._assertion.metadata(SHOP_CHANNEL)

    async def viewed(self, customer_id: str, language: str) -> Product | None:
        if self._timeline is None:
            raise Unavailable("no customer service is configured", reason="CUSTOMER_NOT_CONFIGURED")
        timeline = await self._call(
            "customer",
            cast(
                "Awaitable[interaction_api.ListInteractionsResponse]",
                self._timeline.ListInteractions(
                    interaction_api.ListInteractionsRequest(
                        customer_id=customer_id, page_size=TIMELINE_PAGE
                    ),
                    timeout=self._timeout,
                    metadata=await self._tokens.metadata(),
                ),
            ),
        )
        if timeline is None:
            return None
        skus = [i.sku for i in timeline.interactions if i.kind in LOOKED_AT and i.sku]
        for product in await self._products_of(skus[:MAX_SOURCE_SKUS], language):
            return product  # the newest one the web shop still sells
        return None

    async def _products_of(self, skus: Sequence[str], language: str) -> list[Product]:
        """The products of ``skus`` the web shop sells, in the order of the SKUs."""
        if not skus:
            return []
        stub = self._catalog_stub()
        variants = await self._call(
            "catalog",
            stub.BatchGetVariants(
                catalog_api.BatchGetVariantsRequest(skus=list(skus)),
                timeout=self._timeout,
                metadata=self._shopper(),
            ),
        )
        if variants is None:
            return []
        by_sku = {v.sku: v.product_id for v in variants.variants}
        ids = list(dict.fromkeys(by_sku[s] for s in skus if s in by_sku))
        if not ids:
            return []
        products = await self._call(
            "catalog",
            stub.BatchGetProducts(
                catalog_api.BatchGetProductsRequest(ids=ids, language_code=language),
                timeout=self._timeout,
                metadata=self._shopper(),
            ),
        )
        found = {p.id: p for p in (products.products if products else ())}
        return [_product(found[i]) for i in ids if i in found]

    async def complementary(self, skus: Sequence[str], limit: int, language: str) -> list[Product]:
        stub = self._catalog_stub()
        bought = await self._products_of(list(skus)[:MAX_SOURCE_SKUS], language)
        seen = {p.id for p in bought}
        out: list[Product] = []
        for product in bought:
            related = await self._call(
                "catalog",
                stub.ListRelatedProducts(
                    catalog_api.ListRelatedProductsRequest(
                        product_id=product.id,
                        types=list(COMPLEMENTS),
                        page_size=limit,
                        language_code=language,
                    ),
                    timeout=self._timeout,
                    metadata=self._shopper(),
                ),
            )
            for item in related.related if related else ():
                if item.product.id not in seen:
                    seen.add(item.product.id)
                    out.append(_product(item.product))
                if len(out) >= limit:
                    return out
        return out


def _product(p: catalog_pb.Product) -> Product:
    return Product(p.id, p.title, tuple(v.sku for v in p.variants))
