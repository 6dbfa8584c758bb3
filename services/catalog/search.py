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
    lowest_price = (
        sa.select(sa.func.min(best_per_sku))
        .where(variants.c.product_id == products.c.id)
        .correlate(products)
        .scalar_subquery()
    )
    from_price = lowest_price.label("from_price")
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

    if query.sort is d.SearchSort.PRICE_ASCENDING:
        order = [base.c.from_price.asc().nulls_last(), base.c.id]
    elif query.sort is d.SearchSort.PRICE_DESCENDING:
        order = [base.c.from_price.desc().nulls_last(), base.c.id]
    elif query.sort is d.SearchSort.NEWEST or not query.terms:
        order = [base.c.published_at.desc().nulls_last(), base.c.created_at.desc(), base.c.id]
    else:
        order = [base.c.score.desc(), base.c.published_at.desc().nulls_last(), base.c.id]
    # The page travels in the same statement as the count and the facets: the matching runs
    # once (PostgreSQL materializes a CTE read by several branches) and it is one round trip.
    page = (
        sa.select(
            base.c.id,
            (base.c.from_price if needs_price else sa.null()).label("price"),
            sa.func.row_number().over(order_by=order).label("rank"),
        )
        .order_by(*order)
        .offset(query.offset)
        .limit(query.limit)
        .subquery("page")
    )
    # Without a price filter or sort, the from-price is computed for the page's rows alone.
    hits_branch = sa.select(
        sa.literal("hit").label("field"),
        sa.cast(page.c.id, sa.Text).label("value"),
        page.c.rank.label("n"),
        sa.cast(page.c.price if needs_price else lowest_price, sa.Numeric).label("price"),
    ).select_from(page.join(products, products.c.id == page.c.id))
    rows = (
        await session.execute(sa.union_all(hits_branch, *_facet_branches(base, facet_attributes)))
    ).all()
    ranked = sorted((r for r in rows if r[0] == "hit"), key=lambda r: r[2])
    hits: list[tuple[uuid.UUID, Decimal | None]] = [(uuid.UUID(r[1]), r[3]) for r in ranked]
    total, facets = _total_and_facets([r for r in rows if r[0] != "hit"])
    return SearchPage(hits=hits, total=total, facets=facets)


def _facet_branches(base: sa.CTE, facet_attributes: Sequence[str]) -> list[sa.Select[Any]]:
    """The match count and every facet, as branches of the search statement: (field, value,
    count, NULL). A product is one row of ``base`` and its facet tokens are distinct, so
    plain counts are exact (no DISTINCT sort)."""
    count = sa.func.count()
    none = sa.cast(sa.null(), sa.Numeric)
    branches: list[sa.Select[Any]] = [
        sa.select(sa.literal("total"), sa.literal(""), count, none).select_from(base),
        sa.select(
            sa.literal("category"), sa.cast(product_categories.c.category_id, sa.Text), count, none
        )
        .join(base, base.c.id == product_categories.c.product_id)
        .group_by(product_categories.c.category_id),
        sa.select(sa.literal("brand"), base.c.brand, count, none)
        .where(base.c.brand != "")
        .group_by(base.c.brand),
    ]
    if facet_attributes:
        token = sa.func.unnest(base.c.facet_tokens).label("token")
        tokens = sa.select(token).subquery("tokens")
        branches.append(
            sa.select(sa.literal("attribute"), tokens.c.token, count, none)
            .where(sa.func.split_part(tokens.c.token, "=", 1).in_(facet_attributes))
            .group_by(tokens.c.token)
        )
    return branches


def _total_and_facets(rows: Sequence[Any]) -> tuple[int, list[FacetCount]]:
    total = 0
    counts: list[FacetCount] = []
    for field_name, value, n, _ in sorted(rows, key=lambda r: -r[2]):
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
