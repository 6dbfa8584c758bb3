"""Catalog tables (SQLAlchemy 2 Core, typed columns); migrations are generated from these."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import service_metadata

metadata = service_metadata()

_now = sa.func.now()

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("code", sa.Text, nullable=False, unique=True),
    sa.Column("titles", pg.JSONB, nullable=False),
    sa.Column("descriptions", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("brand", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("channels", pg.ARRAY(sa.SmallInteger), nullable=False),
    sa.Column("tax_class", sa.SmallInteger, nullable=False),
    sa.Column("attributes", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("media", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    # Folded text of titles, descriptions, attributes, options and categories (domain
    # normalize_text); trigram-indexed, so substring search works for Japanese without a
    # word segmenter.
    sa.Column("search_text", sa.Text, nullable=False),
    # The titles of every language, folded the same way: relevance compares the query with
    # this short text (similarity() over the whole search_text cost ~70 % of a search).
    sa.Column("search_title", sa.Text, nullable=False, server_default=""),
    # "key=value" for attributes and variant options: filters and facets.
    sa.Column("facet_tokens", pg.ARRAY(sa.Text), nullable=False),
    sa.Index(
        "ix_products_search_text_trgm",
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    ),
    sa.Index("ix_products_facet_tokens", "facet_tokens", postgresql_using="gin"),
    sa.Index("ix_products_status_published", "status", sa.text("published_at DESC")),
    sa.Index("ix_products_created", sa.text("created_at DESC"), "id"),
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column(
        "product_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("products.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("options", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("attributes", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
)

barcodes = sa.Table(
    "barcodes",
    metadata,
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("type", sa.SmallInteger, nullable=False),
    # GTIN-14 of JAN/EAN/UPC codes and SGTIN-96 tags: one lookup key for every format.
    sa.Column("gtin", sa.Text, index=True),
    sa.Column(
        "sku",
        sa.Text,
        sa.ForeignKey("variants.sku", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
)

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("parent_id", pg.UUID(as_uuid=True), sa.ForeignKey("categories.id"), index=True),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("titles", pg.JSONB, nullable=False),
    sa.Column("position", sa.Integer, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False),
    # Siblings need distinct slugs; NULLS NOT DISTINCT makes that hold for roots too.
    sa.UniqueConstraint("parent_id", "slug", postgresql_nulls_not_distinct=True),
)

product_categories = sa.Table(
    "product_categories",
    metadata,
    sa.Column(
        "product_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("products.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "category_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("categories.id"),
        primary_key=True,
        index=True,
    ),
)

attribute_definitions = sa.Table(
    "attribute_definitions",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("labels", pg.JSONB, nullable=False),
    sa.Column("options", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("facetable", sa.Boolean, nullable=False, server_default=sa.false()),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, sa.ForeignKey("variants.sku", ondelete="CASCADE"), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount", sa.Numeric(18, 2), nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("price_list", sa.Text, nullable=False),
    sa.Column("valid_from", sa.DateTime(timezone=True)),
    sa.Column("valid_until", sa.DateTime(timezone=True)),
    # When the entry was last set: among entries that rank alike, the last set applies.
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_prices_sku_currency", "sku", "currency"),
)

relations = sa.Table(
    "product_relations",
    metadata,
    sa.Column(
        "product_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("products.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("type", sa.SmallInteger, primary_key=True),
    sa.Column(
        "related_product_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("products.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
)
