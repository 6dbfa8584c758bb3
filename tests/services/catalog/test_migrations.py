"""Catalog migrations: 0002 backfills products.search_title with the domain's folding."""

from __future__ import annotations

import json
import uuid

import asyncpg

from services.catalog import domain as d
from services.catalog.app import definition
from tenpo.kit import migrations

TITLES = [
    {"ja": "ローカット　スニーカー（ホワイト）", "en": "Low-Top  SNEAKERS"},
    {"ja": "ｽﾆｰｶｰ ＡＢＣ"},
    {"en": "  Rain   Boots "},
    {"ja": "雪駄", "en": "Setta"},
]


async def test_search_title_is_backfilled_as_the_domain_folds_titles(database_url: str) -> None:
    await migrations.upgrade(definition.migrations, database_url, "0001")  # type: ignore[arg-type]
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for n, titles in enumerate(TITLES):
            await connection.execute(
                "INSERT INTO products (id, code, titles, status, channels, tax_class, version,"
                " search_text, facet_tokens) VALUES ($1, $2, $3, 2, '{1}', 1, 1, '', '{}')",
                uuid.uuid4(),
                f"P-{n}",
                json.dumps(titles),
            )
        await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
        rows = await connection.fetch("SELECT code, titles, search_title FROM products")
    finally:
        await connection.close()
    assert len(rows) == len(TITLES)
    for row in rows:
        folded = d.Product(id=uuid.uuid4(), code=row["code"], titles=json.loads(row["titles"]))
        # The same words; jsonb may list the languages in another order, which relevance
        # (substring tests and the length) does not see.
        assert sorted(row["search_title"].split(" ")) == sorted(folded.search_title().split(" ")), (
            row["code"]
        )
        assert row["search_title"] == row["search_title"].strip()
