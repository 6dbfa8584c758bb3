"""Catalog persistence: rows ⇄ domain objects over the unit of work's session."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import domain as d
from services.catalog.models import (
    attribute_definitions,
    barcodes,
    categories,
    prices,
    product_categories,
    products,
    relations,
    variants,
)


def _attrs_to_json(values: Sequence[d.AttributeValue]) -> list[dict[str, Any]]:
    return [{"key": a.key, "value": a.value} for a in values]


def _attrs_from_json(data: Iterable[Mapping[str, Any]]) -> tuple[d.AttributeValue, ...]:
    return tuple(d.AttributeValue(item["key"], item["value"]) for item in data)


class ProductStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, product_id: uuid.UUID, *, for_update: bool = False) -> d.Product | None:
        query = sa.select(products).where(products.c.id == product_id)
        if for_update:
            # Read-modify-write under a row lock: a concurrent update waits, then sees ours.
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        if row is None:
            return None
        return (await self._hydrate([row]))[0]

    async def get_many(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, d.Product]:
        if not product_ids:
            return {}
        rows = (
            (await self.session.execute(sa.select(products).where(products.c.id.in_(product_ids))))
            .mappings()
            .all()
        )
        return {p.id: p for p in await self._hydrate(rows)}

    async def find_by_code(self, code: str) -> d.Product | None:
        row = (
            (
                await self.session.execute(
                    sa.select(products).where(products.c.code == code).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return (await self._hydrate([row]))[0] if row else None

    async def product_ids_for_skus(self, skus: Sequence[str]) -> dict[str, uuid.UUID]:
        if not skus:
            return {}
        rows = await self.session.execute(
            sa.select(variants.c.sku, variants.c.product_id).where(variants.c.sku.in_(skus))
        )
        return {sku: product_id for sku, product_id in rows.all()}

    async def taken_barcodes(self, values: Sequence[str], product_id: uuid.UUID) -> list[str]:
        if not values:
            return []
        rows = await self.session.execute(
            sa.select(barcodes.c.value)
            .join(variants, variants.c.sku == barcodes.c.sku)
            .where(barcodes.c.value.in_(values), variants.c.product_id != product_id)
        )
        return list(rows.scalars())

    async def list_page(
        self,
        *,
        statuses: Sequence[int],
        channel: int | None,
        category_ids: Sequence[uuid.UUID] | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Product]:
        query = sa.select(products).where(products.c.status.in_(statuses))
        if channel is not None:
            query = query.where(sa.literal(channel) == sa.any_(products.c.channels))
        if category_ids is not None:
            query = query.where(
                sa.exists().where(
                    product_categories.c.product_id == products.c.id,
                    product_categories.c.category_id.in_(category_ids),
                )
            )
        if after is not None:
            query = query.where(sa.tuple_(products.c.created_at, products.c.id) < sa.tuple_(*after))
        query = query.order_by(products.c.created_at.desc(), products.c.id.desc()).limit(limit)
        rows = (await self.session.execute(query)).mappings().all()
        return await self._hydrate(rows)

    async def _hydrate(self, rows: Sequence[RowMapping]) -> list[d.Product]:
        ids = [row["id"] for row in rows]
        variant_rows = (
            (
                await self.session.execute(
                    sa.select(variants)
                    .where(variants.c.product_id.in_(ids))
                    .order_by(variants.c.product_id, variants.c.position)
                )
            )
            .mappings()
            .all()
        )
        skus = [v["sku"] for v in variant_rows]
        codes: dict[str, list[d.Barcode]] = {}
        if skus:
            for code in (
                await self.session.execute(
                    sa.select(barcodes).where(barcodes.c.sku.in_(skus)).order_by(barcodes.c.value)
                )
            ).mappings():
                codes.setdefault(code["sku"], []).append(
                    d.Barcode(d.BarcodeType(code["type"]), code["value"])
                )
        by_product: dict[uuid.UUID, list[d.Variant]] = {}
        for v in variant_rows:
            by_product.setdefault(v["product_id"], []).append(
                d.Variant(
                    sku=v["sku"],
                    options=dict(v["options"]),
                    barcodes=tuple(codes.get(v["sku"], ())),
                    attributes=_attrs_from_json(v["attributes"]),
                )
            )
        cats: dict[uuid.UUID, list[uuid.UUID]] = {}
        if ids:
            for product_id, category_id in (
                await self.session.execute(
                    sa.select(product_categories.c.product_id, product_categories.c.category_id)
                    .where(product_categories.c.product_id.in_(ids))
                    .order_by(product_categories.c.category_id)
                )
            ).all():
                cats.setdefault(product_id, []).append(category_id)
        return [
            d.Product(
                id=row["id"],
                code=row["code"],
                titles=dict(row["titles"]),
                descriptions=dict(row["descriptions"]),
                brand=row["brand"],
                status=d.ProductStatus(row["status"]),
                category_ids=tuple(cats.get(row["id"], ())),
                channels=frozenset(row["channels"]),
                tax_class=d.TaxClass(row["tax_class"]),
                attributes=_attrs_from_json(row["attributes"]),
                media=tuple(
                    d.MediaItem(m["url"], dict(m.get("alt_texts", {}))) for m in row["media"]
                ),
                variants=tuple(by_product.get(row["id"], ())),
                version=row["version"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                published_at=row["published_at"],
            )
            for row in rows
        ]

    async def save(
        self, product: d.Product, *, category_titles: Sequence[str], is_new: bool
    ) -> None:
        """Insert or overwrite the aggregate. Variants are upserted, not recreated, so the
        prices hanging off an unchanged SKU survive an edit."""
        values = {
            "code": product.code,
            "titles": dict(product.titles),
            "descriptions": dict(product.descriptions),
            "brand": product.brand,
            "status": int(product.status),
            "channels": sorted(product.channels),
            "tax_class": int(product.tax_class),
            "attributes": _attrs_to_json(product.attributes),
            "media": [{"url": m.url, "alt_texts": dict(m.alt_texts)} for m in product.media],
            "version": product.version,
            "updated_at": product.updated_at,
            "published_at": product.published_at,
            "search_text": product.search_text(category_titles),
            "search_title": product.search_title(),
            "facet_tokens": product.facet_tokens(),
        }
        if is_new:
            await self.session.execute(
                sa.insert(products).values(id=product.id, created_at=product.created_at, **values)
            )
        else:
            await self.session.execute(
                sa.update(products).where(products.c.id == product.id).values(**values)
            )
        skus = product.skus
        await self.session.execute(
            sa.delete(variants).where(
                variants.c.product_id == product.id, variants.c.sku.not_in(skus)
            )
        )
        if product.variants:
            insert = pg.insert(variants).values(
                [
                    {
                        "sku": v.sku,
                        "product_id": product.id,
                        "position": i,
                        "options": dict(v.options),
                        "attributes": _attrs_to_json(v.attributes),
                    }
                    for i, v in enumerate(product.variants)
                ]
            )
            await self.session.execute(
                insert.on_conflict_do_update(
                    index_elements=[variants.c.sku],
                    set_={
                        "position": insert.excluded.position,
                        "options": insert.excluded.options,
                        "attributes": insert.excluded.attributes,
                    },
                    # Never steal a SKU from another product; the use case checked, this is
                    # the last line of defence under concurrency.
                    where=variants.c.product_id == product.id,
                )
            )
            await self.session.execute(sa.delete(barcodes).where(barcodes.c.sku.in_(skus)))
            codes = [
                {"value": b.value, "type": int(b.type), "gtin": b.gtin, "sku": v.sku}
                for v in product.variants
                for b in v.barcodes
            ]
            if codes:
                await self.session.execute(sa.insert(barcodes).values(codes))
        await self.session.execute(
            sa.delete(product_categories).where(product_categories.c.product_id == product.id)
        )
        if product.category_ids:
            await self.session.execute(
                sa.insert(product_categories).values(
                    [{"product_id": product.id, "category_id": c} for c in product.category_ids]
                )
            )

    async def delete(self, product_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(products).where(products.c.id == product_id))

    async def lookup_barcode(self, code: str, gtin: str | None) -> tuple[str, d.BarcodeType] | None:
        condition = barcodes.c.value == code
        if gtin is not None:
            condition = sa.or_(condition, barcodes.c.gtin == gtin)
        row = (
            await self.session.execute(
                sa.select(barcodes.c.sku, barcodes.c.type)
                .where(condition)
                .order_by((barcodes.c.value == code).desc())
                .limit(1)
            )
        ).first()
        return (row.sku, d.BarcodeType(row.type)) if row else None

    async def relations_of(
        self, product_id: uuid.UUID, types: Sequence[int]
    ) -> list[tuple[int, uuid.UUID, int]]:
        query = sa.select(
            relations.c.type, relations.c.related_product_id, relations.c.position
        ).where(relations.c.product_id == product_id)
        if types:
            query = query.where(relations.c.type.in_(types))
        rows = await self.session.execute(query.order_by(relations.c.type, relations.c.position))
        return [(r.type, r.related_product_id, r.position) for r in rows.all()]

    async def replace_relations(
        self, product_id: uuid.UUID, types: Sequence[int], new: Sequence[tuple[int, uuid.UUID, int]]
    ) -> None:
        await self.session.execute(
            sa.delete(relations).where(
                relations.c.product_id == product_id, relations.c.type.in_(types)
            )
        )
        if new:
            await self.session.execute(
                sa.insert(relations).values(
                    [
                        {
                            "product_id": product_id,
                            "type": t,
                            "related_product_id": r,
                            "position": p,
                        }
                        for t, r, p in new
                    ]
                )
            )


class CategoryStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _to_domain(row: RowMapping) -> d.Category:
        return d.Category(
            id=row["id"],
            parent_id=row["parent_id"],
            slug=row["slug"],
            titles=dict(row["titles"]),
            position=row["position"],
            version=row["version"],
        )

    async def get(self, category_id: uuid.UUID, *, for_update: bool = False) -> d.Category | None:
        query = sa.select(categories).where(categories.c.id == category_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return self._to_domain(row) if row else None

    async def all(self) -> list[d.Category]:
        rows = (
            await self.session.execute(
                sa.select(categories).order_by(categories.c.position, categories.c.slug)
            )
        ).mappings()
        return [self._to_domain(r) for r in rows]

    async def parents(self) -> dict[uuid.UUID, uuid.UUID | None]:
        rows = await self.session.execute(sa.select(categories.c.id, categories.c.parent_id))
        return {child: parent for child, parent in rows.all()}

    async def existing_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = await self.session.execute(
            sa.select(categories.c.id).where(categories.c.id.in_(ids))
        )
        return set(rows.scalars())

    async def titles_of(self, ids: Sequence[uuid.UUID]) -> list[str]:
        if not ids:
            return []
        rows = await self.session.execute(
            sa.select(categories.c.titles).where(categories.c.id.in_(ids))
        )
        return [text for titles in rows.scalars() for text in titles.values()]

    async def descendants(self, roots: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """The categories and everything below them (a recursive CTE)."""
        if not roots:
            return []
        tree = (
            sa.select(categories.c.id).where(categories.c.id.in_(roots)).cte("tree", recursive=True)
        )
        tree = tree.union_all(sa.select(categories.c.id).where(categories.c.parent_id == tree.c.id))
        return list((await self.session.execute(sa.select(tree.c.id))).scalars())

    async def insert(self, category: d.Category) -> None:
        await self.session.execute(
            sa.insert(categories).values(
                id=category.id,
                parent_id=category.parent_id,
                slug=category.slug,
                titles=dict(category.titles),
                position=category.position,
                version=category.version,
            )
        )

    async def update(self, category: d.Category) -> None:
        await self.session.execute(
            sa.update(categories)
            .where(categories.c.id == category.id)
            .values(
                parent_id=category.parent_id,
                slug=category.slug,
                titles=dict(category.titles),
                position=category.position,
                version=category.version,
            )
        )

    async def slug_taken(
        self, parent_id: uuid.UUID | None, slug: str, exclude: uuid.UUID | None
    ) -> bool:
        query = sa.select(categories.c.id).where(
            categories.c.parent_id.is_not_distinct_from(parent_id), categories.c.slug == slug
        )
        if exclude is not None:
            query = query.where(categories.c.id != exclude)
        return (await self.session.execute(query.limit(1))).first() is not None

    async def is_in_use(self, category_id: uuid.UUID) -> bool:
        child = sa.select(categories.c.id).where(categories.c.parent_id == category_id).limit(1)
        member = (
            sa.select(product_categories.c.product_id)
            .where(product_categories.c.category_id == category_id)
            .limit(1)
        )
        return (await self.session.execute(child)).first() is not None or (
            await self.session.execute(member)
        ).first() is not None

    async def delete(self, category_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(categories).where(categories.c.id == category_id))


class AttributeStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> dict[str, d.AttributeDefinition]:
        rows = (
            await self.session.execute(
                sa.select(attribute_definitions).order_by(attribute_definitions.c.key)
            )
        ).mappings()
        return {
            r["key"]: d.AttributeDefinition(
                key=r["key"],
                type=d.AttributeType(r["type"]),
                labels=dict(r["labels"]),
                options={k: dict(v) for k, v in r["options"].items()},
                facetable=r["facetable"],
            )
            for r in rows
        }

    async def insert(self, definition: d.AttributeDefinition) -> bool:
        result = await self.session.execute(
            pg.insert(attribute_definitions)
            .values(
                key=definition.key,
                type=int(definition.type),
                labels=dict(definition.labels),
                options={k: dict(v) for k, v in definition.options.items()},
                facetable=definition.facetable,
            )
            .on_conflict_do_nothing()
            .returning(attribute_definitions.c.key)
        )
        return result.first() is not None


class PriceStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _to_domain(row: RowMapping) -> d.PriceEntry:
        return d.PriceEntry(
            id=row["id"],
            sku=row["sku"],
            price=d.Money(row["currency"], Decimal(row["amount"])),
            channel=row["channel"],
            price_list=row["price_list"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
            set_at=row["set_at"],
        )

    async def for_skus(
        self, skus: Sequence[str], currency: str | None = None
    ) -> dict[str, list[d.PriceEntry]]:
        if not skus:
            return {}
        query = sa.select(prices).where(prices.c.sku.in_(skus))
        if currency is not None:
            query = query.where(prices.c.currency == currency)
        result: dict[str, list[d.PriceEntry]] = {}
        for row in (
            await self.session.execute(
                query.order_by(
                    prices.c.sku,
                    prices.c.currency,
                    prices.c.channel,
                    prices.c.valid_from.nulls_first(),
                )
            )
        ).mappings():
            result.setdefault(row["sku"], []).append(self._to_domain(row))
        return result

    async def get(self, price_id: uuid.UUID) -> d.PriceEntry | None:
        row = (
            (await self.session.execute(sa.select(prices).where(prices.c.id == price_id)))
            .mappings()
            .first()
        )
        return self._to_domain(row) if row else None

    async def upsert(self, entry: d.PriceEntry) -> None:
        values = {
            "sku": entry.sku,
            "currency": entry.price.currency,
            "amount": entry.price.amount,
            "channel": entry.channel,
            "price_list": entry.price_list,
            "valid_from": entry.valid_from,
            "valid_until": entry.valid_until,
            # Per statement, so that of two alike entries of one request the later applies.
            "set_at": sa.func.clock_timestamp(),
        }
        insert = pg.insert(prices).values(id=entry.id, **values)
        await self.session.execute(
            insert.on_conflict_do_update(index_elements=[prices.c.id], set_=values)
        )

    async def delete(self, price_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(prices).where(prices.c.id == price_id))

    async def page(
        self,
        sku: str,
        *,
        after: tuple[str, int, datetime | None, uuid.UUID] | None,
        limit: int,
    ) -> list[d.PriceEntry]:
        """A SKU's entries by (currency, channel, start with open-ended first, id), starting
        after the position ``after`` (keyset pagination)."""
        never = sa.text("'-infinity'::timestamptz")
        start = sa.func.coalesce(prices.c.valid_from, never)
        key = sa.tuple_(prices.c.currency, prices.c.channel, start, prices.c.id)
        query = sa.select(prices).where(prices.c.sku == sku)
        if after is not None:
            currency, channel, valid_from, price_id = after
            query = query.where(
                key
                > sa.tuple_(
                    sa.literal(currency),
                    sa.literal(channel, sa.SmallInteger),
                    sa.func.coalesce(sa.literal(valid_from, sa.DateTime(timezone=True)), never),
                    sa.literal(price_id, pg.UUID(as_uuid=True)),
                )
            )
        query = query.order_by(prices.c.currency, prices.c.channel, start, prices.c.id).limit(limit)
        rows = (await self.session.execute(query)).mappings().all()
        return [self._to_domain(row) for row in rows]
