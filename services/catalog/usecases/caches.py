"""Catalog use cases: the in-process caches every read shares, on ``tenpo.kit.cache``.

- **Products** by id, each with its rendered messages per language, so a hot GetProduct
  answers without SQL and without converting. An entry is dropped by this process's own
  writes and, across replicas, by the service's own product events (``app.py``); the TTL
  bounds staleness should an invalidation ever be missed.
- **Attribute definitions** and **category titles**: small whole tables read by every
  render or search, re-read every ``reference_ttl_seconds`` and dropped at once by this
  process's own writes (another replica's change shows within the TTL).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.catalog import convert
from services.catalog import domain as d
from services.catalog.store import AttributeStore, CategoryStore
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.kit.cache import RefreshingValue, TTLCache, ttl_cache
from tenpo.kit.db import Database


@dataclass
class CachedProduct:
    product: d.Product
    # Rendered once per language. GetProduct's whole response is kept too: building one
    # copies the product message, which is most of a hot call's own work.
    messages: dict[str, pb.Product] = field(default_factory=dict)
    responses: dict[str, api.GetProductResponse] = field(default_factory=dict)


class CatalogCaches:
    def __init__(
        self,
        db: Database,
        *,
        product_ttl_seconds: float = 60.0,
        max_products: int = 20_000,
        reference_ttl_seconds: float = 30.0,
    ) -> None:
        self._db = db
        self.products: TTLCache[uuid.UUID, CachedProduct] = ttl_cache(
            max_products, product_ttl_seconds
        )
        self.definitions = RefreshingValue(self._load_definitions, reference_ttl_seconds)
        self.category_titles = RefreshingValue(self._load_category_titles, reference_ttl_seconds)

    async def _load_definitions(self) -> dict[str, d.AttributeDefinition]:
        async with self._db.unit_of_work() as uow:
            return await AttributeStore(uow.session).all()

    async def _load_category_titles(self) -> dict[str, Mapping[str, str]]:
        async with self._db.unit_of_work() as uow:
            return {str(c.id): c.titles for c in await CategoryStore(uow.session).all()}

    # ------------------------------------------------------------------------ products

    def remember(self, product: d.Product) -> CachedProduct | None:
        """The entry for ``product``, added if it is newer than what is cached; None when a
        newer version is already cached (``product`` is a stale read: never cache it)."""
        entry = self.products.get(product.id)
        if entry is not None and entry.product.version == product.version:
            return entry
        if entry is not None and entry.product.version > product.version:
            return None
        entry = CachedProduct(product)
        self.products[product.id] = entry
        return entry

    def forget(self, product_id: uuid.UUID) -> None:
        self.products.pop(product_id, None)

    async def message(self, product: d.Product, language: str) -> pb.Product:
        entry = self.remember(product)
        message = entry.messages.get(language) if entry is not None else None
        if message is None:
            message = convert.product(product, await self.definitions.get(), language)
            if entry is not None:
                entry.messages[language] = message
        return message

    async def get_product_response(
        self, entry: CachedProduct, language: str
    ) -> api.GetProductResponse:
        response = entry.responses.get(language)
        if response is None:
            response = api.GetProductResponse(product=await self.message(entry.product, language))
            entry.responses[language] = response
        return response
