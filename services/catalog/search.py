"""Catalog search in SQL: trigram-indexed substring matching over folded text, filters,
facets. The query itself (its rules and defaults) is the domain's ``SearchQuery``."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
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


@dataclass(frozen=True)
class _Shape:
    """What the search statement's SQL depends on; every value travels as a parameter, so
    one statement per shape is built once and reused (building it cost as much Python time
    as PostgreSQL spent running it), and SQLAlchemy's compiled cache and the driver's
    prepared statements see the same statement object each time."""

    terms: int
    channel: bool
    categories: bool
    brands: bool
    attribute_filters: int
    min_price: bool
    max_price: bool
    sort: d.SearchSort
    at: bool
    facet_attributes: tuple[str, ...]


async def search(
    session: AsyncSession, query: d.SearchQuery, facet_attributes: Sequence[str]
) -> SearchPage:
    shape = _Shape(
        terms=len(query.terms),
        channel=query.channel is not None,
        categories=bool(query.category_ids),
        brands=bool(query.brands),
        attribute_filters=len(query.attribute_filters),
        min_price=bool(query.min_price),
        max_price=bool(query.max_price),
        # Without words there is no relevance: newest first.
        sort=query.sort if query.terms else _newest_unless_price(query.sort),
        at=query.at is not None,
        facet_attributes=tuple(facet_attributes),
    )
    parameters: dict[str, Any] = {
        "statuses": list(query.statuses),
        "channel": query.channel or 0,
        "currency": query.currency,
        "at": query.at,
        "offset": query.offset,
        "limit": query.limit,
        "min_price": query.min_price,
        "max_price": query.max_price,
        "brands": list(query.brands),
    }
    for i, term in enumerate(query.terms):
        parameters[f"pattern_{i}"] = f"%{_escape_like(term)}%"
        parameters[f"term_{i}"] = term
    for i, (key, values) in enumerate(query.attribute_filters):
        parameters[f"attribute_{i}"] = [f"{key}={v}" for v in values]
    if query.category_ids:
        parameters["categories"] = await CategoryStore(session).descendants(query.category_ids)
    rows = (await session.execute(_statement(shape), parameters)).all()
    ranked = sorted((r for r in rows if r[0] == "hit"), key=lambda r: r[2])
    hits: list[tuple[uuid.UUID, Decimal | None]] = [(uuid.UUID(r[1]), r[3]) for r in ranked]
    total, facets = _total_and_facets([r for r in rows if r[0] != "hit"])
    return SearchPage(hits=hits, total=total, facets=facets)


def _newest_unless_price(sort: d.SearchSort) -> d.SearchSort:
    if sort in (d.SearchSort.PRICE_ASCENDING, d.SearchSort.PRICE_DESCENDING):
        return sort
    return d.SearchSort.NEWEST


@functools.lru_cache(maxsize=256)
def _statement(shape: _Shape) -> sa.CompoundSelect:
    """The one statement of a search of this shape: the page (with its from-prices), the
    match count and every facet, as branches over one match that PostgreSQL materializes
    once."""
    at: sa.ColumnElement[Any] = (
        sa.bindparam("at", type_=sa.DateTime(timezone=True)) if shape.at else sa.func.now()
    )
    # The lowest price that applies now on the channel, per product (the "from" price). It
    # follows domain.resolve_price: per SKU the channel's own entry first, then time-limited,
    # then the latest start, then the entry set last.
    best_per_sku = (
        sa.select(prices.c.amount)
        .where(
            prices.c.sku == variants.c.sku,
            prices.c.currency == sa.bindparam("currency", type_=sa.Text),
            sa.or_(
                prices.c.channel == 0,
                prices.c.channel == sa.bindparam("channel", type_=sa.SmallInteger),
            ),
            sa.or_(prices.c.valid_from.is_(None), prices.c.valid_from <= at),
            sa.or_(prices.c.valid_until.is_(None), prices.c.valid_until > at),
        )
        .order_by(
            (prices.c.channel != 0).desc(),
            sa.or_(prices.c.valid_from.is_not(None), prices.c.valid_until.is_not(None)).desc(),
            prices.c.valid_from.desc().nulls_last(),
            prices.c.set_at.desc(),
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
    conditions: list[sa.ColumnElement[bool]] = [
        products.c.status == sa.any_(sa.bindparam("statuses", type_=pg.ARRAY(sa.SmallInteger)))
    ]
    if shape.channel:
        conditions.append(
            sa.bindparam("channel", type_=sa.SmallInteger) == sa.any_(products.c.channels)
        )
    for i in range(shape.terms):
        conditions.append(
            products.c.search_text.like(sa.bindparam(f"pattern_{i}", type_=sa.Text), escape="\\")
        )
    if shape.categories:
        conditions.append(
            sa.exists().where(
                product_categories.c.product_id == products.c.id,
                product_categories.c.category_id
                == sa.any_(sa.bindparam("categories", type_=pg.ARRAY(sa.UUID))),
            )
        )
    if shape.brands:
        conditions.append(
            products.c.brand == sa.any_(sa.bindparam("brands", type_=pg.ARRAY(sa.Text)))
        )
    for i in range(shape.attribute_filters):
        conditions.append(
            products.c.facet_tokens.overlap(
                sa.bindparam(f"attribute_{i}", type_=products.c.facet_tokens.type)
            )
        )

    # The from-price is a subquery per product: compute it for every match only when the
    # price filters or sorts, otherwise for the page's rows alone.
    needs_price = (
        shape.min_price
        or shape.max_price
        or shape.sort in (d.SearchSort.PRICE_ASCENDING, d.SearchSort.PRICE_DESCENDING)
    )
    columns: list[Any] = [
        products.c.id,
        products.c.published_at,
        products.c.created_at,
        products.c.brand,
        products.c.facet_tokens,
    ]
    if shape.sort is d.SearchSort.RELEVANCE:
        columns.append(_title_hits(shape.terms).label("title_hits"))
        columns.append(sa.func.char_length(products.c.search_title).label("title_length"))
    if needs_price:
        columns.append(from_price)
    matched = sa.select(*columns).where(*conditions)
    if shape.min_price or shape.max_price:
        inner = matched.subquery("priced")
        price_conditions: list[sa.ColumnElement[bool]] = [inner.c.from_price.is_not(None)]
        if shape.min_price:
            price_conditions.append(
                inner.c.from_price >= sa.bindparam("min_price", type_=sa.Numeric)
            )
        if shape.max_price:
            price_conditions.append(
                inner.c.from_price <= sa.bindparam("max_price", type_=sa.Numeric)
            )
        base = sa.select(inner).where(*price_conditions).cte("matched")
    else:
        base = matched.cte("matched")

    if shape.sort is d.SearchSort.PRICE_ASCENDING:
        order = [base.c.from_price.asc().nulls_last(), base.c.id]
    elif shape.sort is d.SearchSort.PRICE_DESCENDING:
        order = [base.c.from_price.desc().nulls_last(), base.c.id]
    elif shape.sort is d.SearchSort.NEWEST:
        order = [base.c.published_at.desc().nulls_last(), base.c.created_at.desc(), base.c.id]
    else:
        # Relevance: titles holding more of the words first, then the shortest title (the
        # closest to what was typed), then the newest; the id makes the order total, so
        # pages neither repeat nor skip a product.
        order = [
            base.c.title_hits.desc(),
            base.c.title_length,
            base.c.published_at.desc().nulls_last(),
            base.c.id,
        ]
    # The page travels in the same statement as the count and the facets: the matching runs
    # once (PostgreSQL materializes a CTE read by several branches) and it is one round trip.
    page = (
        sa.select(
            base.c.id,
            (base.c.from_price if needs_price else sa.null()).label("price"),
            sa.func.row_number().over(order_by=order).label("rank"),
        )
        .order_by(*order)
        .offset(sa.bindparam("offset", type_=sa.Integer))
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .subquery("page")
    )
    # Without a price filter or sort, the from-price is computed for the page's rows alone.
    hits_branch = sa.select(
        sa.literal("hit").label("field"),
        sa.cast(page.c.id, sa.Text).label("value"),
        page.c.rank.label("n"),
        sa.cast(page.c.price if needs_price else lowest_price, sa.Numeric).label("price"),
    ).select_from(page.join(products, products.c.id == page.c.id))
    return sa.union_all(hits_branch, *_facet_branches(base, shape.facet_attributes))


def _title_hits(terms: int) -> sa.ColumnElement[int]:
    """How many of the query's words occur in the product's folded titles: relevance's
    first key. A substring test per word costs about a microsecond; the similarity() of the
    query to the whole search text it replaces cost ~100 µs per match (trigrams of ~150
    characters built for every row), about 70 % of a search."""
    hits: list[sa.ColumnElement[int]] = [
        sa.case(
            (
                sa.func.strpos(products.c.search_title, sa.bindparam(f"term_{i}", type_=sa.Text))
                > 0,
                1,
            ),
            else_=0,
        )
        for i in range(terms)
    ]
    if not hits:
        return sa.literal(0)
    total = hits[0]
    for hit in hits[1:]:
        total = total + hit
    return total


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
            # starts_with, not split_part(token, '=', 1) IN (...): a third of the cost.
            .where(
                sa.or_(*(sa.func.starts_with(tokens.c.token, f"{k}=") for k in facet_attributes))
            )
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
