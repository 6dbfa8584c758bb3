"""Catalog search in SQL: trigram-indexed substring matching over folded text, filters,
facets. The query itself (its rules and defaults) is the domain's ``SearchQuery``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import domain as d
from services.catalog.models import prices, product_categories, products, variants
from services.catalog.store import CategoryStore


@dataclass
class FacetCount:
    field: str
    value: str
    count: int


@dataclass
class SearchPage:
    hits: list[tuple[uuid.UUID, Decimal | None]]  # product id, from-price
    total: int
    facets: list[FacetCount] = field(default_factory=list)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(
    session: AsyncSession, query: d.SearchQuery, facet_attributes: Sequence[str]
) -> SearchPage:
    at = query.at or sa.func.now()
    # The lowest price that applies now on the channel, per product (the "from" price). It
    # follows domain.resolve_price: per SKU the channel's own entry first, then time-limited,
    # then the latest start.
    channel_value = query.channel or 0
    best_per_sku = (
        sa.select(prices.c.amount)
        .where(
            prices.c.sku == variants.c.sku,
            prices.c.currency == query.currency,
            prices.c.channel.in_([0, channel_value]),
            sa.or_(prices.c.valid_from.is_(None), prices.c.valid_from <= at),
            sa.or_(prices.c.valid_until.is_(None), prices.c.valid_until > at),
        )
        .order_by(
            (prices.c.channel != 0).desc(),
            sa.or_(prices.c.valid_from.is_not(None), prices.c.valid_until.is_not(None)).desc(),
            prices.c.valid_from.desc().nulls_last(),
        )
        .limit(1)
        .correlate(variants)
        .scalar_subquery()
    )
    from_price = (
        sa.select(sa.func.min(best_per_sku))
        .where(variants.c.product_id == products.c.id)
        .correlate(products)
        .scalar_subquery()
        .label("from_price")
    )
    conditions: list[sa.ColumnElement[bool]] = [products.c.status.in_(query.statuses)]
    if query.channel is not None:
        conditions.append(sa.literal(query.channel) == sa.any_(products.c.channels))
    for term in query.terms:
        conditions.append(products.c.search_text.like(f"%{_escape_like(term)}%", escape="\\"))
    if query.category_ids:
        tree = await CategoryStore(session).descendants(query.category_ids)
        conditions.append(
            sa.exists().where(
                product_categories.c.product_id == products.c.id,
                product_categories.c.category_id.in_(tree),
            )
        )
    if query.brands:
        conditions.append(products.c.brand.in_(query.brands))
    for key, values in query.attribute_filters:
        wanted = [f"{key}={v}" for v in values]
        conditions.append(
            products.c.facet_tokens.overlap(sa.cast(wanted, products.c.facet_tokens.type))
        )

    # The from-price is a subquery per product: compute it for every match only when the
    # price filters or sorts, otherwise for the page's rows alone.
    needs_price = bool(query.min_price or query.max_price) or query.sort in (
        d.SearchSort.PRICE_ASCENDING,
        d.SearchSort.PRICE_DESCENDING,
    )
    columns: list[Any] = [
        products.c.id,
        products.c.published_at,
        products.c.created_at,
        products.c.brand,
        products.c.facet_tokens,
        (
            sa.func.similarity(products.c.search_text, " ".join(query.terms))
            if query.terms
            else sa.literal(0.0)
        ).label("score"),
    ]
    if needs_price:
        columns.append(from_price)
    matched = sa.select(*columns).where(*conditions)
    if query.min_price or query.max_price:
        inner = matched.subquery("priced")
        price_conditions: list[sa.ColumnElement[bool]] = [inner.c.from_price.is_not(None)]
        if query.min_price:
            price_conditions.append(inner.c.from_price >= query.min_price)
        if query.max_price:
            price_conditions.append(inner.c.from_price <= query.max_price)
        base = sa.select(inner).where(*price_conditions).cte("matched")
    else:
        base = matched.cte("matched")

    total, facets = await _total_and_facets(session, base, facet_attributes)
    if query.sort is d.SearchSort.PRICE_ASCENDING:
        order = [base.c.from_price.asc().nulls_last(), base.c.id]
    elif query.sort is d.SearchSort.PRICE_DESCENDING:
        order = [base.c.from_price.desc().nulls_last(), base.c.id]
    elif query.sort is d.SearchSort.NEWEST or not query.terms:
        order = [base.c.published_at.desc().nulls_last(), base.c.created_at.desc(), base.c.id]
    else:
        order = [base.c.score.desc(), base.c.published_at.desc().nulls_last(), base.c.id]
    page_columns = [base.c.id, base.c.from_price] if needs_price else [base.c.id]
    rows = (
        await session.execute(
            sa.select(*page_columns).order_by(*order).offset(query.offset).limit(query.limit)
        )
    ).all()
    if needs_price:
        hits = [(r.id, r.from_price) for r in rows]
    else:
        ids = [r.id for r in rows]
        priced: dict[uuid.UUID, Decimal | None] = {}
        if ids:
            result = await session.execute(
                sa.select(products.c.id, from_price).where(products.c.id.in_(ids))
            )
            priced = {product_id: price for product_id, price in result.all()}
        hits = [(i, priced.get(i)) for i in ids]
    return SearchPage(hits=hits, total=total, facets=facets)


async def _total_and_facets(
    session: AsyncSession, base: sa.CTE, facet_attributes: Sequence[str]
) -> tuple[int, list[FacetCount]]:
    """The match count and every facet in one statement, so the matching runs once."""
    count = sa.func.count(sa.distinct(base.c.id))
    branches = [
        sa.select(sa.literal("total").label("field"), sa.literal("").label("value"), count),
        sa.select(sa.literal("category"), sa.cast(product_categories.c.category_id, sa.Text), count)
        .join(base, base.c.id == product_categories.c.product_id)
        .group_by(product_categories.c.category_id),
        sa.select(sa.literal("brand"), base.c.brand, count)
        .where(base.c.brand != "")
        .group_by(base.c.brand),
    ]
    if facet_attributes:
        token = sa.func.unnest(base.c.facet_tokens).label("token")
        tokens = sa.select(base.c.id, token).subquery("tokens")
        branches.append(
            sa.select(
                sa.literal("attribute"), tokens.c.token, sa.func.count(sa.distinct(tokens.c.id))
            )
            .where(sa.func.split_part(tokens.c.token, "=", 1).in_(facet_attributes))
            .group_by(tokens.c.token)
        )
    rows = (await session.execute(sa.union_all(*branches))).all()
    total = 0
    counts: list[FacetCount] = []
    for field_name, value, n in sorted(rows, key=lambda r: -r[2]):
        if field_name == "total":
            total = n
        elif field_name == "attribute":
            attribute, _, option = value.partition("=")
            counts.append(FacetCount(attribute, option, n))
        else:
            counts.append(FacetCount(field_name, value, n))
    return total, counts[:500]


def facet_attribute_keys(definitions: dict[str, d.AttributeDefinition]) -> list[str]:
    """Facetable attributes, plus the variant options every apparel shop filters by."""
    return sorted({k for k, v in definitions.items() if v.facetable} | {"color", "size"})
