"""Catalog domain: products and their rules, prices, barcodes, text normalisation. No I/O."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from enum import IntEnum

from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument

DEFAULT_LANGUAGE = "ja"
SUPPORTED_LANGUAGES = ("ja", "en")
MAX_TEXT = 200
MAX_DESCRIPTION = 10_000
MAX_VARIANTS = 200
MAX_MEDIA = 50
MAX_ATTRIBUTES = 100
MAX_CATEGORIES_PER_PRODUCT = 20
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SKU_PATTERN = CODE_PATTERN
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class ProductStatus(IntEnum):
    # Values mirror tenpo.catalog.v1.ProductStatus.
    DRAFT = 1
    PUBLISHED = 2
    ARCHIVED = 3


class TaxClass(IntEnum):
    STANDARD = 1
    REDUCED = 2
    EXEMPT = 3

    @property
    def rate_percent(self) -> int:
        return {TaxClass.STANDARD: 10, TaxClass.REDUCED: 8, TaxClass.EXEMPT: 0}[self]


class BarcodeType(IntEnum):
    JAN = 1
    EAN13 = 2
    UPC = 3
    EPC = 4


class AttributeType(IntEnum):
    TEXT = 1
    NUMBER = 2
    ENUM = 3
    BOOLEAN = 4


class RelationType(IntEnum):
    CROSS_SELL = 1
    UP_SELL = 2
    ACCESSORY = 3
    GOES_WITH = 4


#: Channels where anonymous callers without a channel are assumed to browse.
DEFAULT_CHANNEL = 1  # CHANNEL_WEB

ALLOWED_TRANSITIONS: Mapping[ProductStatus, frozenset[ProductStatus]] = {
    ProductStatus.DRAFT: frozenset({ProductStatus.PUBLISHED, ProductStatus.ARCHIVED}),
    ProductStatus.PUBLISHED: frozenset({ProductStatus.ARCHIVED}),
    ProductStatus.ARCHIVED: frozenset({ProductStatus.PUBLISHED}),
}


# ---------------------------------------------------------------------------------- text


_KATAKANA_START, _KATAKANA_END = ord("ァ"), ord("ヶ")
_KANA_OFFSET = ord("ァ") - ord("ぁ")


def normalize_text(text: str) -> str:
    """Fold text for matching: NFKC (full-width ASCII and half-width kana become standard),
    lower case, katakana → hiragana (so スニーカー, すにーかー and ｽﾆｰｶｰ all match), spaces
    collapsed."""
    folded = unicodedata.normalize("NFKC", text).lower()
    chars = [
        chr(ord(c) - _KANA_OFFSET) if _KATAKANA_START <= ord(c) <= _KATAKANA_END else c
        for c in folded
    ]
    return " ".join("".join(chars).split())


def query_terms(query: str, *, max_terms: int = 8) -> list[str]:
    """The words of a search query, normalised; every one must match."""
    terms = [t for t in normalize_text(query).replace("　", " ").split(" ") if t]
    if len(terms) > max_terms:
        raise InvalidArgument(
            f"at most {max_terms} search words",
            reason="QUERY_TOO_LONG",
            field_violations=[FieldViolation("query", f"at most {max_terms} words")],
        )
    return terms


def localized(texts: Mapping[str, str], language: str) -> str:
    """The text in ``language``, else the default language, else any translation."""
    if texts.get(language):
        return texts[language]
    if texts.get(DEFAULT_LANGUAGE):
        return texts[DEFAULT_LANGUAGE]
    return next((value for value in texts.values() if value), "")


def pick_language(requested: str, accept_language: str = "") -> str:
    """The caller's language: explicit request field, else Accept-Language, else Japanese."""
    for candidate in [requested, *(part.split(";")[0] for part in accept_language.split(","))]:
        base = candidate.strip().lower().split("-")[0]
        if base in SUPPORTED_LANGUAGES:
            return base
    return DEFAULT_LANGUAGE


# ------------------------------------------------------------------------------ barcodes


def gtin_check_digit(body: str) -> int:
    """GS1 check digit of the digits before it (weights 3,1,3,… from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalize_gtin(code: str) -> str | None:
    """GTIN-14 form of a JAN/EAN-13, UPC-A (12), EAN-8 or GTIN-14 with a valid check digit."""
    digits = code.strip()
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        return None
    if gtin_check_digit(digits[:-1]) != int(digits[-1]):
        return None
    return digits.zfill(14)


# SGTIN-96 partition table: (company prefix bits, company digits, item bits).
_SGTIN_PARTITIONS = {
    0: (40, 12, 4),
    1: (37, 11, 7),
    2: (34, 10, 10),
    3: (30, 9, 14),
    4: (27, 8, 17),
    5: (24, 7, 20),
    6: (20, 6, 24),
}


def sgtin96_to_gtin(epc_hex: str) -> str | None:
    """The GTIN-14 an SGTIN-96 RFID tag encodes (GS1 TDS), or None for other tags.

    A shelf or mirror reads the tag's unique EPC; resolving it to the GTIN finds the variant
    even when only the JAN code was registered."""
    value = epc_hex.strip().lower()
    if len(value) != 24 or any(c not in "0123456789abcdef" for c in value):
        return None
    bits = int(value, 16)
    if bits >> 88 != 0x30:  # SGTIN-96 header
        return None
    partition = (bits >> 82) & 0b111
    if partition not in _SGTIN_PARTITIONS:
        return None
    company_bits, company_digits, item_bits = _SGTIN_PARTITIONS[partition]
    after_partition = 82
    company = (bits >> (after_partition - company_bits)) & ((1 << company_bits) - 1)
    item = (bits >> (after_partition - company_bits - item_bits)) & ((1 << item_bits) - 1)
    company_str = str(company).zfill(company_digits)
    item_str = str(item).zfill(13 - company_digits)  # indicator digit + item reference
    body = item_str[0] + company_str + item_str[1:]
    return body + str(gtin_check_digit(body))


def validate_barcode(kind: BarcodeType, value: str, field_name: str) -> str:
    """The stored form of a barcode (digits, or lower-case hex for EPC) or InvalidArgument."""
    if kind is BarcodeType.EPC:
        normalized = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{24}|[0-9a-f]{32}|[0-9a-f]{64}", normalized):
            raise _invalid(
                field_name, "an EPC must be 96, 128 or 256 bits of hex", "BARCODE_INVALID"
            )
        return normalized
    lengths = {BarcodeType.JAN: (13, 8), BarcodeType.EAN13: (13,), BarcodeType.UPC: (12,)}[kind]
    digits = value.strip()
    if len(digits) not in lengths or normalize_gtin(digits) is None:
        raise _invalid(
            field_name, f"not a valid {kind.name} (length or check digit)", "BARCODE_INVALID"
        )
    return digits


# ------------------------------------------------------------------------------ products


@dataclass(frozen=True)
class AttributeDefinition:
    key: str
    type: AttributeType
    labels: Mapping[str, str]
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # value → labels
    facetable: bool = False

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise _invalid(
                "attribute_definition.key", "lower_snake_case, at most 64", "KEY_INVALID"
            )
        if self.type is AttributeType.ENUM and not self.options:
            raise _invalid(
                "attribute_definition.options", "an ENUM needs options", "OPTIONS_REQUIRED"
            )


@dataclass(frozen=True)
class AttributeValue:
    key: str
    value: str | float | bool

    def matches(self, definition: AttributeDefinition) -> bool:
        kind = definition.type
        if kind is AttributeType.BOOLEAN:
            return isinstance(self.value, bool)
        if kind is AttributeType.NUMBER:
            return isinstance(self.value, int | float) and not isinstance(self.value, bool)
        if kind is AttributeType.ENUM:
            return isinstance(self.value, str) and self.value in definition.options
        return isinstance(self.value, str) and len(self.value) <= MAX_TEXT

    def facet_token(self) -> str:
        value = self.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        return f"{self.key}={text}"


@dataclass(frozen=True)
class Barcode:
    type: BarcodeType
    value: str

    @property
    def gtin(self) -> str | None:
        if self.type is BarcodeType.EPC:
            return sgtin96_to_gtin(self.value)
        return normalize_gtin(self.value)


@dataclass(frozen=True)
class Variant:
    sku: str
    options: Mapping[str, str] = field(default_factory=dict)
    barcodes: Sequence[Barcode] = ()
    attributes: Sequence[AttributeValue] = ()


@dataclass(frozen=True)
class MediaItem:
    url: str
    alt_texts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Product:
    id: uuid.UUID
    code: str
    titles: Mapping[str, str]
    descriptions: Mapping[str, str] = field(default_factory=dict)
    brand: str = ""
    status: ProductStatus = ProductStatus.DRAFT
    category_ids: Sequence[uuid.UUID] = ()
    channels: frozenset[int] = frozenset()
    tax_class: TaxClass = TaxClass.STANDARD
    attributes: Sequence[AttributeValue] = ()
    media: Sequence[MediaItem] = ()
    variants: Sequence[Variant] = ()
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    published_at: datetime | None = None

    @property
    def etag(self) -> str:
        return f'"{self.id.hex[:8]}-{self.version}"'

    @property
    def skus(self) -> list[str]:
        return [v.sku for v in self.variants]

    def is_visible_to(self, *, staff: bool, channel: int) -> bool:
        """Staff see everything; everyone else sees published products of their channel."""
        if staff:
            return True
        return (
            self.status is ProductStatus.PUBLISHED and (channel or DEFAULT_CHANNEL) in self.channels
        )

    def search_text(self, category_titles: Iterable[str] = ()) -> str:
        """Everything a shopper may type to find this product, folded for matching."""
        parts: list[str] = [
            self.code,
            self.brand,
            *self.titles.values(),
            *self.descriptions.values(),
        ]
        parts.extend(category_titles)
        for attribute in self.attributes:
            parts.append(str(attribute.value))
        for variant in self.variants:
            parts.append(variant.sku)
            parts.extend(variant.options.values())
        return normalize_text(" ".join(p for p in parts if p))

    def search_title(self) -> str:
        """The titles of every language, folded like :meth:`search_text`: what search
        relevance compares the query with."""
        return normalize_text(" ".join(t for t in self.titles.values() if t))

    def facet_tokens(self) -> list[str]:
        """``key=value`` for every product attribute and variant option (filters, facets)."""
        tokens = {a.facet_token() for a in self.attributes}
        for variant in self.variants:
            tokens.update(f"{k}={v}" for k, v in variant.options.items())
            tokens.update(a.facet_token() for a in variant.attributes)
        return sorted(tokens)

    def ensure_publishable(self) -> None:
        """A live product needs something to sell, somewhere to sell it, and a Japanese title."""
        problems = []
        if not self.variants:
            problems.append(
                FieldViolation("product.variants", "a published product needs a variant")
            )
        if not self.channels:
            problems.append(
                FieldViolation("product.channels", "a published product needs a channel")
            )
        if not self.titles.get(DEFAULT_LANGUAGE):
            problems.append(
                FieldViolation("product.titles", "a published product needs a Japanese title")
            )
        if problems:
            raise FailedPrecondition(
                "the product is not ready to be published",
                reason="PRODUCT_NOT_PUBLISHABLE",
                field_violations=problems,
            )

    def transition(self, target: ProductStatus, now: datetime) -> Product:
        """Move through the lifecycle; publishing requires a sellable product."""
        if target is self.status:
            return self
        if target not in ALLOWED_TRANSITIONS[self.status]:
            raise FailedPrecondition(
                f"a {self.status.name} product cannot become {target.name}",
                reason="INVALID_STATUS_TRANSITION",
                metadata={"from": self.status.name, "to": target.name},
            )
        if target is ProductStatus.PUBLISHED:
            self.ensure_publishable()
        return replace(
            self,
            status=target,
            published_at=self.published_at or (now if target is ProductStatus.PUBLISHED else None),
        )


def validate_product(product: Product, definitions: Mapping[str, AttributeDefinition]) -> None:
    """Check every field at once and report all violations together."""
    problems: list[FieldViolation] = []

    def check(condition: bool, path: str, description: str) -> None:
        if not condition:
            problems.append(FieldViolation(path, description))

    check(bool(CODE_PATTERN.match(product.code)), "product.code", "1-64 letters, digits, . _ -")
    check(any(product.titles.values()), "product.titles", "at least one title is required")
    for language, text in product.titles.items():
        check(
            language in SUPPORTED_LANGUAGES, f"product.titles[{language}]", "unsupported language"
        )
        check(
            len(text) <= MAX_TEXT, f"product.titles[{language}]", f"at most {MAX_TEXT} characters"
        )
    for language, text in product.descriptions.items():
        check(
            language in SUPPORTED_LANGUAGES,
            f"product.descriptions[{language}]",
            "unsupported language",
        )
        check(
            len(text) <= MAX_DESCRIPTION,
            f"product.descriptions[{language}]",
            f"at most {MAX_DESCRIPTION} characters",
        )
    check(len(product.brand) <= MAX_TEXT, "product.brand", f"at most {MAX_TEXT} characters")
    check(len(product.variants) <= MAX_VARIANTS, "product.variants", f"at most {MAX_VARIANTS}")
    check(len(product.media) <= MAX_MEDIA, "product.media", f"at most {MAX_MEDIA}")
    check(
        len(product.category_ids) <= MAX_CATEGORIES_PER_PRODUCT,
        "product.category_ids",
        f"at most {MAX_CATEGORIES_PER_PRODUCT}",
    )
    for i, item in enumerate(product.media):
        check(
            item.url.startswith("https://") and len(item.url) <= 2048,
            f"product.media[{i}].url",
            "an https URL of at most 2048 characters",
        )
    _check_attributes(product.attributes, "product.attributes", definitions, problems)
    seen_skus: set[str] = set()
    seen_codes: set[str] = set()
    for i, variant in enumerate(product.variants):
        path = f"product.variants[{i}]"
        check(bool(SKU_PATTERN.match(variant.sku)), f"{path}.sku", "1-64 letters, digits, . _ -")
        check(variant.sku not in seen_skus, f"{path}.sku", "duplicate SKU in the product")
        seen_skus.add(variant.sku)
        check(len(variant.options) <= 10, f"{path}.options", "at most 10 options")
        for key, value in variant.options.items():
            check(
                bool(KEY_PATTERN.match(key)),
                f"{path}.options[{key}]",
                "key must be lower_snake_case",
            )
            check(0 < len(value) <= 64, f"{path}.options[{key}]", "value of 1-64 characters")
        for j, barcode in enumerate(variant.barcodes):
            try:
                validate_barcode(barcode.type, barcode.value, f"{path}.barcodes[{j}].value")
            except InvalidArgument as error:
                problems.extend(error.field_violations)
            check(barcode.value not in seen_codes, f"{path}.barcodes[{j}]", "duplicate barcode")
            seen_codes.add(barcode.value)
        _check_attributes(variant.attributes, f"{path}.attributes", definitions, problems)
    if problems:
        raise InvalidArgument(
            "the product is invalid", reason="PRODUCT_INVALID", field_violations=problems
        )


def _check_attributes(
    attributes: Sequence[AttributeValue],
    path: str,
    definitions: Mapping[str, AttributeDefinition],
    problems: list[FieldViolation],
) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append(FieldViolation(path, f"at most {MAX_ATTRIBUTES}"))
    for i, attribute in enumerate(attributes):
        definition = definitions.get(attribute.key)
        if definition is None:
            problems.append(
                FieldViolation(f"{path}[{i}].key", f"unknown attribute {attribute.key!r}")
            )
        elif not attribute.matches(definition):
            problems.append(
                FieldViolation(
                    f"{path}[{i}]", f"value does not fit the {definition.type.name} attribute"
                )
            )


# -------------------------------------------------------------------------------- prices


@dataclass(frozen=True)
class Money:
    currency: str
    amount: Decimal  # tax-inclusive, in currency units (JPY: whole yen)


@dataclass(frozen=True)
class PriceEntry:
    id: uuid.UUID
    sku: str
    price: Money
    channel: int = 0  # 0: every channel
    price_list: str = "regular"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    #: When it was last set (stored entries): the tie-break between entries that rank alike.
    set_at: datetime | None = field(default=None, compare=False)

    def applies(self, channel: int, currency: str, at: datetime) -> bool:
        return (
            self.price.currency == currency
            and self.channel in (0, channel)
            and (self.valid_from is None or self.valid_from <= at)
            and (self.valid_until is None or at < self.valid_until)
        )

    @property
    def time_limited(self) -> bool:
        return self.valid_from is not None or self.valid_until is not None


def validate_price(entry: PriceEntry, path: str) -> None:
    problems: list[FieldViolation] = []
    if not re.fullmatch(r"[A-Z]{3}", entry.price.currency):
        problems.append(FieldViolation(f"{path}.amount.currency_code", "ISO 4217 code"))
    if entry.price.amount < 0:
        problems.append(FieldViolation(f"{path}.amount", "must not be negative"))
    if entry.price.currency == "JPY" and entry.price.amount != entry.price.amount.to_integral():
        problems.append(FieldViolation(f"{path}.amount", "JPY has no minor unit"))
    if entry.valid_from and entry.valid_until and entry.valid_until <= entry.valid_from:
        problems.append(FieldViolation(f"{path}.valid_until", "must be after valid_from"))
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", entry.price_list):
        problems.append(FieldViolation(f"{path}.price_list", "lower-case slug, at most 64"))
    if problems:
        raise InvalidArgument("invalid price", reason="PRICE_INVALID", field_violations=problems)


def _priority(entry: PriceEntry) -> tuple[bool, bool, str, str]:
    # A channel's own price beats the all-channel one; a time-limited (sale) price beats an
    # open-ended one; among those, the one that started last wins, and among entries alike
    # the one set last (a new entry next to an equal one was an arbitrary row's otherwise).
    return (
        entry.channel != 0,
        entry.time_limited,
        _sortable(entry.valid_from),
        _sortable(entry.set_at),
    )


def _sortable(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (moment.astimezone(UTC) if moment.tzinfo else moment).isoformat()


@dataclass(frozen=True)
class PriceResolution:
    applied: PriceEntry
    regular: PriceEntry | None  # the open-ended price a time-limited one overrides


def resolve_price(
    entries: Iterable[PriceEntry], *, channel: int, currency: str, at: datetime
) -> PriceResolution | None:
    candidates = [e for e in entries if e.applies(channel, currency, at)]
    if not candidates:
        return None
    applied = max(candidates, key=_priority)
    regular = None
    if applied.time_limited:
        open_ended = [e for e in candidates if not e.time_limited]
        if open_ended:
            regular = max(open_ended, key=lambda e: e.channel != 0)
    return PriceResolution(applied, regular)


def tax_included(amount: Decimal, tax_class: TaxClass, currency: str) -> Decimal:
    """Consumption tax contained in a tax-inclusive amount, rounded down to the currency's
    smallest unit (the usual Japanese practice, 切り捨て)."""
    rate = Decimal(tax_class.rate_percent)
    tax = amount * rate / (Decimal(100) + rate)
    quantum = Decimal(1) if currency == "JPY" else Decimal("0.01")
    return tax.quantize(quantum, rounding=ROUND_FLOOR)


# -------------------------------------------------------------------------------- search


class SearchSort(IntEnum):
    # Values mirror tenpo.catalog.v1.SearchSort.
    RELEVANCE = 1
    PRICE_ASCENDING = 2
    PRICE_DESCENDING = 3
    NEWEST = 4


MAX_QUERY_LENGTH = 200
MAX_SEARCH_CATEGORIES = 20
MAX_SEARCH_BRANDS = 50
MAX_ATTRIBUTE_FILTERS = 20
#: Offset pagination gets slower the deeper it goes; nobody pages 400 screens of results.
MAX_SEARCH_OFFSET = 10_000
DEFAULT_CURRENCY = "JPY"


@dataclass(frozen=True)
class SearchQuery:
    """A product search, validated, with its defaults applied (see :meth:`build`)."""

    terms: Sequence[str]
    channel: int | None  # None: staff searching every channel
    statuses: Sequence[int]
    currency: str
    category_ids: Sequence[uuid.UUID] = ()
    brands: Sequence[str] = ()
    attribute_filters: Sequence[tuple[str, Sequence[str]]] = ()
    min_price: int = 0
    max_price: int = 0
    sort: SearchSort = SearchSort.RELEVANCE
    offset: int = 0
    limit: int = 24
    at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        text: str,
        staff: bool,
        viewer_channel: int,
        channel: int = 0,
        currency: str = "",
        category_ids: Sequence[uuid.UUID] = (),
        brands: Sequence[str] = (),
        attribute_filters: Sequence[tuple[str, Sequence[str]]] = (),
        min_price: int = 0,
        max_price: int = 0,
        sort: int = 0,
        limit: int = 24,
    ) -> SearchQuery:
        """Shoppers search their own channel's published products; staff may name a channel
        (0: every channel). Without a sort, a text query sorts by relevance, else newest."""
        if len(text) > MAX_QUERY_LENGTH:
            raise _invalid("query", f"at most {MAX_QUERY_LENGTH} characters", "QUERY_TOO_LONG")
        if min_price < 0 or max_price < 0 or (max_price and min_price > max_price):
            raise _invalid("min_price", "0 <= min_price <= max_price", "PRICE_RANGE_INVALID")
        for name, values, limit_of in (
            ("category_ids", category_ids, MAX_SEARCH_CATEGORIES),
            ("brands", brands, MAX_SEARCH_BRANDS),
            ("attribute_filters", attribute_filters, MAX_ATTRIBUTE_FILTERS),
        ):
            if len(values) > limit_of:
                raise _invalid(name, f"at most {limit_of}", "TOO_MANY_ITEMS")
        if sort:
            try:
                order = SearchSort(sort)
            except ValueError:
                raise _invalid("sort", "is not a known value", "ENUM_INVALID") from None
        else:
            order = SearchSort.RELEVANCE if text.strip() else SearchSort.NEWEST
        return cls(
            terms=query_terms(text),
            channel=(channel or None) if staff else viewer_channel,
            statuses=[int(ProductStatus.PUBLISHED)],
            currency=(currency or DEFAULT_CURRENCY).upper(),
            category_ids=tuple(category_ids),
            brands=tuple(brands),
            attribute_filters=tuple((k, tuple(v)) for k, v in attribute_filters),
            min_price=min_price,
            max_price=max_price,
            sort=order,
            limit=limit,
        )

    def at_offset(self, offset: int) -> SearchQuery:
        if not 0 <= offset <= MAX_SEARCH_OFFSET:
            raise _invalid("page_token", "page too deep", "INVALID_PAGE_TOKEN")
        return replace(self, offset=offset)

    def next_offset(self, total: int) -> int | None:
        """Where the next page starts, or None after the last one."""
        following = self.offset + self.limit
        return following if following < total else None

    def fingerprint(self) -> dict[str, object]:
        """What a page token is bound to: everything but the position."""
        return {
            "t": list(self.terms),
            "ch": self.channel,
            "st": list(self.statuses),
            "cur": self.currency,
            "cat": sorted(str(c) for c in self.category_ids),
            "b": sorted(self.brands),
            "a": sorted((k, sorted(v)) for k, v in self.attribute_filters),
            "min": self.min_price,
            "max": self.max_price,
            "s": int(self.sort),
        }


# ---------------------------------------------------------------------------- categories


@dataclass(frozen=True)
class Category:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    slug: str
    titles: Mapping[str, str]
    position: int = 0
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"{self.id.hex[:8]}-{self.version}"'


def validate_category(category: Category) -> None:
    problems: list[FieldViolation] = []
    if not SLUG_PATTERN.match(category.slug):
        problems.append(FieldViolation("category.slug", "lower-case slug, at most 64"))
    if not any(category.titles.values()):
        problems.append(FieldViolation("category.titles", "at least one title is required"))
    for language, text in category.titles.items():
        if language not in SUPPORTED_LANGUAGES or len(text) > MAX_TEXT:
            problems.append(FieldViolation(f"category.titles[{language}]", "ja/en, at most 200"))
    if problems:
        raise InvalidArgument(
            "invalid category", reason="CATEGORY_INVALID", field_violations=problems
        )


def ensure_no_cycle(
    moving: uuid.UUID, new_parent: uuid.UUID | None, parents: Mapping[uuid.UUID, uuid.UUID | None]
) -> None:
    """Refuse to move a category under itself or one of its descendants."""
    cursor = new_parent
    while cursor is not None:
        if cursor == moving:
            raise FailedPrecondition(
                "a category cannot move under itself or its descendants",
                reason="CATEGORY_CYCLE",
            )
        cursor = parents.get(cursor)


def _invalid(path: str, description: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(path, description)],
    )
