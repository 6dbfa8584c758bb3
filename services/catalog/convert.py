"""Proto ⇄ domain translation for the catalog (used by the servicer and for event payloads)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2

from services.catalog import domain as d
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tenpo.kit import wire
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.wire import parse_id as parse_id
from tenpo.kit.wire import timestamp as timestamp

NANOS = Decimal(1_000_000_000)


# ----------------------------------------------------------------------------- scalars


def from_timestamp(message: Timestamp, present: bool, path: str) -> datetime | None:
    return wire.from_timestamp(message, path) if present else None


def money(value: d.Money) -> money_pb2.Money:
    units = int(value.amount)
    nanos = int((value.amount - units) * NANOS)
    return money_pb2.Money(currency_code=value.currency, units=units, nanos=nanos)


def from_money(message: money_pb2.Money, path: str) -> d.Money:
    if (message.units > 0 and message.nanos < 0) or (message.units < 0 and message.nanos > 0):
        raise InvalidArgument(
            "units and nanos must have the same sign",
            reason="MONEY_INVALID",
            field_violations=[FieldViolation(path, "units and nanos must have the same sign")],
        )
    return d.Money(
        message.currency_code.upper(), Decimal(message.units) + Decimal(message.nanos) / NANOS
    )


def localized_text(texts: Mapping[str, str]) -> pb.LocalizedText:
    return pb.LocalizedText(translations=dict(texts))


# -------------------------------------------------------------------------- attributes


def attribute(
    value: d.AttributeValue, definitions: Mapping[str, d.AttributeDefinition], language: str
) -> pb.Attribute:
    message = pb.Attribute(key=value.key)
    definition = definitions.get(value.key)
    if definition is not None:
        message.label = d.localized(definition.labels, language)
    raw = value.value
    if isinstance(raw, bool):
        message.bool_value = raw
    elif isinstance(raw, int | float):
        message.number_value = float(raw)
    elif definition is not None and definition.type is d.AttributeType.ENUM:
        message.enum_value = raw
        message.value_label = d.localized(definition.options.get(raw, {}), language) or raw
    else:
        message.text_value = raw
    return message


def from_attribute(message: pb.Attribute) -> d.AttributeValue:
    kind = message.WhichOneof("value")
    value: str | float | bool
    if kind == "bool_value":
        value = message.bool_value
    elif kind == "number_value":
        value = wire.finite(message.number_value, f"attributes[{message.key}].number_value")
    elif kind == "enum_value":
        value = message.enum_value
    else:
        value = message.text_value
    return d.AttributeValue(message.key, value)


def attribute_definition(
    definition: d.AttributeDefinition, language: str
) -> pb.AttributeDefinition:
    return pb.AttributeDefinition(
        key=definition.key,
        type=int(definition.type),  # type: ignore[arg-type]
        label=d.localized(definition.labels, language),
        labels=localized_text(definition.labels),
        options=[
            pb.AttributeOption(
                value=value, label=d.localized(labels, language), labels=localized_text(labels)
            )
            for value, labels in definition.options.items()
        ],
        facetable=definition.facetable,
    )


def from_attribute_definition(message: pb.AttributeDefinition) -> d.AttributeDefinition:
    if message.type == pb.ATTRIBUTE_TYPE_UNSPECIFIED:
        raise InvalidArgument(
            "attribute type is required",
            reason="REQUIRED_FIELD_MISSING",
            field_violations=[FieldViolation("attribute_definition.type", "is required")],
        )
    return d.AttributeDefinition(
        key=message.key,
        type=wire.required_enum(d.AttributeType, message.type, "attribute_definition.type"),
        labels=dict(message.labels.translations),
        options={o.value: dict(o.labels.translations) for o in message.options},
        facetable=message.facetable,
    )


# ---------------------------------------------------------------------------- products


def product(
    value: d.Product, definitions: Mapping[str, d.AttributeDefinition], language: str
) -> pb.Product:
    return pb.Product(
        id=str(value.id),
        code=value.code,
        title=d.localized(value.titles, language),
        description=d.localized(value.descriptions, language),
        titles=localized_text(value.titles),
        descriptions=localized_text(value.descriptions),
        brand=value.brand,
        status=int(value.status),  # type: ignore[arg-type]
        category_ids=[str(c) for c in value.category_ids],
        channels=sorted(value.channels),  # type: ignore[arg-type]
        tax_class=int(value.tax_class),  # type: ignore[arg-type]
        attributes=[attribute(a, definitions, language) for a in value.attributes],
        media=[
            pb.Media(
                url=m.url,
                alt_text=d.localized(m.alt_texts, language),
                alt_texts=localized_text(m.alt_texts),
            )
            for m in value.media
        ],
        variants=[variant(v, value.id, definitions, language) for v in value.variants],
        etag=value.etag,
        create_time=timestamp(value.created_at),
        update_time=timestamp(value.updated_at),
        publish_time=timestamp(value.published_at),
    )


def variant(
    value: d.Variant,
    product_id: uuid.UUID,
    definitions: Mapping[str, d.AttributeDefinition],
    language: str,
) -> pb.Variant:
    return pb.Variant(
        sku=value.sku,
        options=dict(value.options),
        barcodes=[pb.Barcode(type=int(b.type), value=b.value) for b in value.barcodes],  # type: ignore[arg-type]
        attributes=[attribute(a, definitions, language) for a in value.attributes],
        product_id=str(product_id),
    )


def from_variant(message: pb.Variant, path: str) -> d.Variant:
    codes = []
    for j, code in enumerate(message.barcodes):
        if code.type == pb.BARCODE_TYPE_UNSPECIFIED:
            raise InvalidArgument(
                "barcode type is required",
                reason="REQUIRED_FIELD_MISSING",
                field_violations=[FieldViolation(f"{path}.barcodes[{j}].type", "is required")],
            )
        kind = wire.required_enum(d.BarcodeType, code.type, f"{path}.barcodes[{j}].type")
        codes.append(
            d.Barcode(kind, d.validate_barcode(kind, code.value, f"{path}.barcodes[{j}].value"))
        )
    return d.Variant(
        sku=message.sku.strip(),
        options=dict(message.options),
        barcodes=tuple(codes),
        attributes=tuple(from_attribute(a) for a in message.attributes),
    )


def product_fields(message: pb.Product) -> dict[str, object]:
    """The writable fields of a Product message, as domain values (by domain field name)."""
    return {
        "code": message.code.strip(),
        "titles": {k: v.strip() for k, v in message.titles.translations.items() if v.strip()},
        "descriptions": {k: v for k, v in message.descriptions.translations.items() if v},
        "brand": message.brand.strip(),
        "category_ids": tuple(
            dict.fromkeys(
                parse_id(c, f"product.category_ids[{i}]")
                for i, c in enumerate(message.category_ids)
            )
        ),
        "channels": frozenset(
            wire.required_enum(common_pb2.Channel, c, f"product.channels[{i}]")
            for i, c in enumerate(message.channels)
            if c
        ),
        "tax_class": wire.optional_enum(d.TaxClass, message.tax_class, "product.tax_class")
        or d.TaxClass.STANDARD,
        "attributes": tuple(from_attribute(a) for a in message.attributes),
        "media": tuple(d.MediaItem(m.url, dict(m.alt_texts.translations)) for m in message.media),
        "variants": tuple(
            from_variant(v, f"product.variants[{i}]") for i, v in enumerate(message.variants)
        ),
    }


#: Proto field name → domain field name, for update masks.
MASKABLE_FIELDS = {
    "code": "code",
    "titles": "titles",
    "descriptions": "descriptions",
    "brand": "brand",
    "status": "status",
    "category_ids": "category_ids",
    "channels": "channels",
    "tax_class": "tax_class",
    "attributes": "attributes",
    "media": "media",
    "variants": "variants",
}


# ---------------------------------------------------------------------- categories etc.


def category(value: d.Category, language: str) -> pb.Category:
    return pb.Category(
        id=str(value.id),
        parent_id=str(value.parent_id) if value.parent_id else "",
        slug=value.slug,
        title=d.localized(value.titles, language),
        titles=localized_text(value.titles),
        position=value.position,
        etag=value.etag,
    )


def price(entry: d.PriceEntry) -> pb.Price:
    return pb.Price(
        id=str(entry.id),
        sku=entry.sku,
        amount=money(entry.price),
        channel=entry.channel,  # type: ignore[arg-type]
        price_list=entry.price_list,
        valid_from=timestamp(entry.valid_from),
        valid_until=timestamp(entry.valid_until),
    )


def from_price(message: pb.Price, path: str) -> d.PriceEntry:
    return d.PriceEntry(
        id=parse_id(message.id, f"{path}.id") if message.id else uuid.uuid4(),
        sku=message.sku.strip(),
        price=from_money(message.amount, f"{path}.amount"),
        channel=wire.optional_enum(common_pb2.Channel, message.channel, f"{path}.channel") or 0,
        price_list=message.price_list or "regular",
        valid_from=from_timestamp(
            message.valid_from, message.HasField("valid_from"), f"{path}.valid_from"
        ),
        valid_until=from_timestamp(
            message.valid_until, message.HasField("valid_until"), f"{path}.valid_until"
        ),
    )


def resolved_price(
    sku: str, resolution: d.PriceResolution, tax_class: d.TaxClass
) -> pb.ResolvedPrice:
    applied = resolution.applied
    tax = d.tax_included(applied.price.amount, tax_class, applied.price.currency)
    message = pb.ResolvedPrice(
        sku=sku,
        amount=money(applied.price),
        tax_amount=money(d.Money(applied.price.currency, tax)),
        tax_rate_percent=float(tax_class.rate_percent),
        tax_class=int(tax_class),  # type: ignore[arg-type]
        price_id=str(applied.id),
        price_list=applied.price_list,
    )
    if resolution.regular is not None:
        message.regular_amount.CopyFrom(money(resolution.regular.price))
    if applied.valid_until is not None:
        message.valid_until.FromDatetime(applied.valid_until.astimezone(UTC))
    return message


def skus_of(products: Sequence[d.Product]) -> list[str]:
    return [sku for p in products for sku in p.skus]
