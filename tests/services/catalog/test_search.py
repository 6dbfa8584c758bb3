"""The search statement on real PostgreSQL: relevance by the folded titles, facets that
cover the whole match, partial Japanese words, and statements reused across queries of one
shape without carrying one query's values into the next."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest_asyncio
import sqlalchemy as sa

from services.catalog import domain as d
from services.catalog.app import definition
from services.catalog.models import prices
from services.catalog.search import SearchPage, search
from services.catalog.store import ProductStore
from tenpo.kit import migrations
from tenpo.kit.db import Database

WEB, KIOSK = 1, 3
FACETS = ["color", "material", "size"]
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def product(
    code: str,
    ja: str,
    en: str = "",
    *,
    description: str = "",
    brand: str = "Minato",
    material: str = "cotton",
    color: str = "white",
    channels: frozenset[int] = frozenset({WEB}),
    published_days_ago: int = 10,
) -> d.Product:
    published = NOW - timedelta(days=published_days_ago)
    return d.Product(
        id=uuid.uuid4(),
        code=code,
        titles={"ja": ja, **({"en": en} if en else {})},
        descriptions={"ja": description} if description else {},
        brand=brand,
        status=d.ProductStatus.PUBLISHED,
        channels=channels,
        attributes=(d.AttributeValue("material", material),),
        variants=(
            d.Variant(f"{code}-S", {"color": color, "size": "S"}),
            d.Variant(f"{code}-M", {"color": color, "size": "M"}),
        ),
        created_at=published,
        updated_at=published,
        published_at=published,
    )


CATALOG = [
    # Relevance among sneakers: the word in the title beats the word in the description
    # only; among titles holding it, the shortest first; the same title, the newest first.
    product("SNK-LONG", "ローカットキャンバススニーカー（ホワイト）", "low-top canvas sneakers"),
    product("SNK-SHORT", "スニーカー", "sneakers", published_days_ago=30),
    product("SNK-SHORT-NEW", "スニーカー", "sneakers", published_days_ago=1, color="navy"),
    product("SOCKS", "くつした", "socks", description="スニーカーに合うソックス"),
    product("BOOT-1", "防水ブーツ", "waterproof boots", brand="Yuki", material="leather"),
    product("BOOT-2", "ショートブーツ", "short boots", brand="Yuki", material="leather"),
    product(
        "BOOT-3",
        "レインブーツ",
        "rain boots",
        description="防水の長靴",
        brand="Ame",
        material="rubber",
    ),
    product("GETA", "雪駄（せった）", "setta sandals", brand="Edo", material="bamboo"),
    product("KIOSK-ONLY", "店舗限定スニーカー", "store-only sneakers", channels=frozenset({KIOSK})),
]


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    database = Database(database_url)
    async with database.unit_of_work() as uow:
        store = ProductStore(uow.session)
        for item in CATALOG:
            await store.save(item, category_titles=[], is_new=True)
        await uow.session.execute(
            sa.insert(prices),
            [
                {
                    "id": uuid.uuid4(),
                    "sku": sku,
                    "currency": "JPY",
                    "amount": Decimal(amount),
                    "channel": 0,
                    "price_list": "regular",
                }
                for sku, amount in (("SNK-SHORT-S", 5000), ("BOOT-1-S", 12000), ("GETA-S", 3000))
            ],
        )
        await uow.commit()
    try:
        yield database
    finally:
        await database.dispose()


async def run(
    db: Database, text: str, *, channel: int = WEB, limit: int = 24, **criteria: object
) -> SearchPage:
    query = d.SearchQuery.build(
        text=text,
        staff=False,
        viewer_channel=channel,
        limit=limit,
        **criteria,  # type: ignore[arg-type]
    )
    query = replace(query, at=NOW)
    async with db.unit_of_work() as uow:
        return await search(uow.session, query, FACETS)


def codes(page: SearchPage, catalog: Sequence[d.Product] = CATALOG) -> list[str]:
    by_id = {p.id: p.code for p in catalog}
    return [by_id[product_id] for product_id, _ in page.hits]


async def test_relevance_title_words_first_then_the_shortest_title_then_the_newest(
    db: Database,
) -> None:
    for text in ("スニーカー", "すにーかー", "ｽﾆｰｶｰ"):
        page = await run(db, text)
        assert codes(page) == ["SNK-SHORT-NEW", "SNK-SHORT", "SNK-LONG", "SOCKS"], text
    # English words rank by the same folded titles.
    assert codes(await run(db, "SNEAKERS")) == ["SNK-SHORT-NEW", "SNK-SHORT", "SNK-LONG"]
    # Two words: the title holding both beats a shorter title holding one of them.
    assert codes(await run(db, "ブーツ 防水")) == ["BOOT-1", "BOOT-3"]


async def test_japanese_partial_words_and_kanji_match(db: Database) -> None:
    assert set(codes(await run(db, "ーカ"))) == {"SNK-LONG", "SNK-SHORT", "SNK-SHORT-NEW", "SOCKS"}
    assert codes(await run(db, "雪駄")) == ["GETA"]
    # The shorter folded title (both languages) first.
    assert codes(await run(db, "ブーツ")) == ["BOOT-3", "BOOT-2", "BOOT-1"]
    assert (await run(db, "スニーカー 雪駄")).total == 0


async def test_facet_counts_cover_the_whole_match_not_the_page(db: Database) -> None:
    page = await run(db, "スニーカー", limit=1)
    assert len(page.hits) == 1 and page.total == 4
    counts: dict[str, dict[str, int]] = {}
    for facet in page.facets:
        counts.setdefault(facet.field, {})[facet.value] = facet.count
    assert sum(counts["brand"].values()) == page.total
    assert sum(counts["material"].values()) == page.total  # one material per product
    assert counts["color"] == {"white": 3, "navy": 1}
    assert counts["size"] == {"S": 4, "M": 4}


async def test_relevance_pages_neither_repeat_nor_skip(db: Database) -> None:
    whole = codes(await run(db, "ー"))
    paged: list[str] = []
    for offset in range(0, len(whole), 2):
        query = d.SearchQuery.build(text="ー", staff=False, viewer_channel=WEB, limit=2)
        query = replace(query, at=NOW).at_offset(offset)
        async with db.unit_of_work() as uow:
            paged.extend(codes(await search(uow.session, query, FACETS)))
    assert paged == whole and len(set(whole)) == len(whole) >= 5


async def test_one_statement_per_shape_takes_each_querys_own_values(db: Database) -> None:
    # Same shape (one word, no filters) one after the other: no value sticks.
    assert codes(await run(db, "雪駄")) == ["GETA"]
    assert codes(await run(db, "防水")) == ["BOOT-1", "BOOT-3"]
    # The channel is a value too: the kiosk sees its own sneakers, the web does not.
    assert "KIOSK-ONLY" in codes(await run(db, "スニーカー", channel=KIOSK))
    assert "KIOSK-ONLY" not in codes(await run(db, "スニーカー", channel=WEB))
    # Brands, attribute filters and price ranges with different values in turn.
    assert set(codes(await run(db, "", brands=["Yuki"]))) == {"BOOT-1", "BOOT-2"}
    assert codes(await run(db, "", brands=["Edo"])) == ["GETA"]
    assert codes(await run(db, "", attribute_filters=[("color", ["navy"])])) == ["SNK-SHORT-NEW"]
    assert set(codes(await run(db, "", attribute_filters=[("material", ["leather"])]))) == {
        "BOOT-1",
        "BOOT-2",
    }
    cheap = await run(db, "", max_price=6000, sort=int(d.SearchSort.PRICE_ASCENDING))
    assert [(c, p) for c, (_, p) in zip(codes(cheap), cheap.hits, strict=True)] == [
        ("GETA", Decimal("3000.00")),
        ("SNK-SHORT", Decimal("5000.00")),
    ]
    dear = await run(db, "", min_price=6000)
    assert codes(dear) == ["BOOT-1"]
