"""The catalog's product cache: versions only move forward, renders are kept per language."""

from __future__ import annotations

import uuid
from dataclasses import replace

from services.catalog import domain as d
from services.catalog.usecases.caches import CatalogCaches
from tenpo.kit.cache import RefreshingValue
from tenpo.kit.db import Database


async def no_definitions() -> dict[str, d.AttributeDefinition]:
    return {}


def caches() -> CatalogCaches:
    # No database here: the definitions come from memory, nothing else is loaded.
    built = CatalogCaches(Database("postgresql+asyncpg://unused@127.0.0.1:1/unused"))
    built.definitions = RefreshingValue(no_definitions, 60.0)
    return built


PRODUCT = d.Product(
    id=uuid.uuid4(), code="A-1", titles={"ja": "靴", "en": "Shoes"}, variants=(d.Variant("A-1-1"),)
)


def test_a_stale_read_never_replaces_a_newer_cached_product() -> None:
    cache = caches()
    newer = replace(PRODUCT, version=2)
    assert cache.remember(newer) is not None
    assert cache.remember(PRODUCT) is None  # version 1 read before version 2 was cached
    assert cache.products[PRODUCT.id].product.version == 2
    newest = replace(PRODUCT, version=3, titles={"ja": "新しい靴"})
    entry = cache.remember(newest)
    assert entry is not None and entry.product.version == 3


async def test_rendered_messages_are_kept_per_version_and_language() -> None:
    cache = caches()
    entry = cache.remember(PRODUCT)
    assert entry is not None
    ja = await cache.message(PRODUCT, "ja")
    assert ja.title == "靴"
    assert await cache.message(PRODUCT, "ja") is ja
    assert (await cache.message(PRODUCT, "en")).title == "Shoes"
    response = await cache.get_product_response(entry, "ja")
    assert response.product.title == "靴"
    assert await cache.get_product_response(entry, "ja") is response

    renamed = replace(PRODUCT, version=2, titles={"ja": "新しい靴"})
    assert (await cache.message(renamed, "ja")).title == "新しい靴"
    cache.forget(PRODUCT.id)
    assert PRODUCT.id not in cache.products
    # A stale copy is rendered but never cached.
    cache.remember(renamed)
    assert (await cache.message(PRODUCT, "ja")).title == "靴"
    assert "ja" not in cache.products[PRODUCT.id].messages
