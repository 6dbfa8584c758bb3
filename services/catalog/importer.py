"""Bulk import client: JSON Lines or CSV files streamed to CatalogService.ImportProducts.

JSON Lines: one ``ImportProductsRequest`` per line in the protobuf JSON mapping, e.g.
``{"product": {"code": "SNK-9", "titles": {"translations": {"ja": "…"}}, "variants": [...]},
"regularPricesJpy": {"SNK-9-27": "8900"}}``.

CSV: one row per variant, grouped into products by ``code``; columns ``code, sku,
title_ja, title_en, description_ja, description_en, brand, categories`` (slugs separated by
``|``), ``channels`` (``WEB|APP|KIOSK…``), ``status`` (``DRAFT``/``PUBLISHED``), ``color``,
``size``, ``jan``, ``price_jpy``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path

import grpc
from google.protobuf import json_format

from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2


class ImportFileError(ValueError):
    """The file itself is unreadable (not a row-level failure, which the service reports)."""


def read_jsonl(lines: Iterable[str]) -> Iterator[api.ImportProductsRequest]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            request = json_format.Parse(line, api.ImportProductsRequest())
        except json_format.ParseError as error:
            raise ImportFileError(f"line {number}: {error}") from None
        request.row_number = number
        yield request


def read_csv(
    lines: Iterable[str], category_ids: Mapping[str, str]
) -> Iterator[api.ImportProductsRequest]:
    reader = csv.DictReader(lines)
    required = {"code", "sku", "title_ja"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise ImportFileError(f"CSV needs the columns {sorted(required)}")
    grouped: dict[str, api.ImportProductsRequest] = {}
    for number, row in enumerate(reader, start=2):
        code = row["code"].strip()
        request = grouped.get(code)
        if request is None:
            request = api.ImportProductsRequest(row_number=number)
            product = request.product
            product.code = code
            for language in ("ja", "en"):
                if row.get(f"title_{language}"):
                    product.titles.translations[language] = row[f"title_{language}"]
                if row.get(f"description_{language}"):
                    product.descriptions.translations[language] = row[f"description_{language}"]
            product.brand = row.get("brand", "")
            for slug in filter(None, (row.get("categories") or "").split("|")):
                # Unknown slugs pass through and fail that product alone, with a reason.
                product.category_ids.append(category_ids.get(slug, slug))
            for channel in filter(None, (row.get("channels") or "").split("|")):
                product.channels.append(
                    common_pb2.Channel.Value(f"CHANNEL_{channel.strip().upper()}")
                )
            status = (row.get("status") or "").strip().upper()
            if status:
                product.status = pb.ProductStatus.Value(f"PRODUCT_STATUS_{status}")
            grouped[code] = request
        variant = request.product.variants.add(sku=row["sku"].strip())
        for option in ("color", "size"):
            if row.get(option):
                variant.options[option] = row[option]
        if row.get("jan"):
            variant.barcodes.add(type=pb.BARCODE_TYPE_JAN, value=row["jan"].strip())
        if row.get("price_jpy"):
            try:
                request.regular_prices_jpy[variant.sku] = int(row["price_jpy"])
            except ValueError:
                raise ImportFileError(f"row {number}: price_jpy must be whole yen") from None
    yield from grouped.values()


async def import_file(
    path: Path, target: str, token: str, *, progress_every: int = 100
) -> api.ImportProductsResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        category_ids: dict[str, str] = {}
        if path.suffix.lower() == ".csv":
            listed = await stub.ListCategories(
                api.ListCategoriesRequest(page_size=500), metadata=metadata
            )
            category_ids = {c.slug: c.id for c in listed.categories}

        async def requests() -> AsyncIterator[api.ImportProductsRequest]:
            with path.open(encoding="utf-8") as handle:
                rows = (
                    read_csv(handle, category_ids)
                    if path.suffix.lower() == ".csv"
                    else read_jsonl(handle)
                )
                for count, request in enumerate(rows, start=1):
                    if count % progress_every == 0:
                        print(f"  sent {count} products…", flush=True)
                    yield request

        return await stub.ImportProducts(requests(), metadata=metadata, timeout=3600)


def summary_text(response: api.ImportProductsResponse) -> str:
    lines = [f"created {response.created}, updated {response.updated}, failed {response.failed}"]
    lines.extend(
        f"  row {f.row_number} {f.code}: {f.reason} {f.message}" for f in response.failures
    )
    return "\n".join(lines)


def as_json(response: api.ImportProductsResponse) -> str:
    return json.dumps(json_format.MessageToDict(response), ensure_ascii=False, indent=2)
