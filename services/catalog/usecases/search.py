"""Catalog use cases: what a search answers, with facet values labelled for the caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.catalog import domain as d
from services.catalog.search import FacetCount


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class Facet:
    field: str
    values: list[FacetValue]


@dataclass(frozen=True)
class SearchResults:
    hits: list[tuple[d.Product, Decimal | None]]  # visible products with their from-price
    total: int
    facets: list[Facet]
    next_offset: int | None  # None after the last page


def labelled_facets(
    counts: Sequence[FacetCount],
    definitions: Mapping[str, d.AttributeDefinition],
    category_titles: Mapping[str, Mapping[str, str]],
    language: str,
) -> list[Facet]:
    """Facet counts grouped by field (in order of first appearance: most frequent first),
    each value labelled in ``language``: category titles, enum option labels, else the value."""
    facets: dict[str, Facet] = {}
    for count in counts:
        facet = facets.setdefault(count.field, Facet(count.field, []))
        label = count.value
        if count.field == "category" and count.value in category_titles:
            label = d.localized(category_titles[count.value], language)
        elif count.field in definitions:
            options = definitions[count.field].options
            label = d.localized(options.get(count.value, {}), language) or count.value
        facet.values.append(FacetValue(count.value, label, count.count))
    return list(facets.values())
