"""Bulk import client: JSON Lines or CSV files streamed to CatalogService.ImportProducts.

JSON Lines: one ``ImportProductsRequest`` per line in the protobuf JSON mapping, e.g.
``{"product": {"code": "SNK-9", "titles": {"translations": {"ja": "…"}}, "variants": [...]},
"regularPricesJpy": {"SNK-9-27": "8900"}}``.

CSV (UTF-8, a header row): one row per variant, the rows of a product adjacent and grouped
by ``code``; columns ``code, sku, title_ja`` (required), ``title_en, description_ja,
description_en, brand, categories`` (slugs, or ``parent/child`` paths where a slug is not
unique, separated by ``|``), ``channels`` (``WEB|APP|KIOSK|SMART_MIRROR…``), ``status``
(``DRAFT``/``PUBLISHED``/``ARCHIVED``), ``color``, ``size``, ``jan``, ``price_jpy`` (whole
yen; ``7,990`` is read as 7990). Product-level columns are read from a product's first row.

The file is read as a stream: one product is held at a time (plus a batch of parsed
products on their way and the codes already seen), so a file of any size imports in
constant memory. A row the client can already tell is wrong (unknown channel, category or
status, a price that is not whole yen, a product whose rows are not adjacent) is reported
with its row number, field and reason, and its product is skipped; the service reports the
products it refuses the same way. Everything else goes on.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
from google.protobuf import json_format

from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2

#: Products per ImportProducts call: the service answers each call with its failures, so
#: errors show while the file is still being read, and a broken connection loses one batch.
BATCH_SIZE = 500
CATEGORY_PAGE_SIZE = 500
CHANNELS = [n.removeprefix("CHANNEL_") for n in common_pb2.Channel.keys()[1:]]
STATUSES = [n.removeprefix("PRODUCT_STATUS_") for n in pb.ProductStatus.keys()[1:]]
#: Marks a slug that several categories share in the slug → id map.
AMBIGUOUS = ""


class ImportFileError(ValueError):
    """The file itself is unusable (wrong format, no header, not UTF-8): nothing row-level."""


@dataclass(frozen=True)
class RowFailure:
    row_number: int
    code: str
    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"row {self.row_number} {self.code or '-'}: {where}{self.reason} {self.message}"


@dataclass
class Tally:
    """Rows read so far (a reader counts them as it goes, for the progress display)."""

    rows: int = 0


Item = api.ImportProductsRequest | RowFailure


# ----------------------------------------------------------------------------- readers


def read_jsonl(lines: Iterable[str], tally: Tally | None = None) -> Iterator[Item]:
    tally = tally or Tally()
    for number, line in enumerate(lines, start=1):
        tally.rows = number
        if not line.strip():
            continue
        try:
            request = json_format.Parse(line, api.ImportProductsRequest())
        except json_format.ParseError as error:
            yield RowFailure(number, _code_of(line), "", "ROW_INVALID", str(error))
            continue
        request.row_number = number
        yield request


def _code_of(line: str) -> str:
    try:
        return str(json.loads(line)["product"]["code"])[:64]
    except (ValueError, KeyError, TypeError):
        return ""


@dataclass
class _Product:
    code: str
    request: api.ImportProductsRequest
    failures: list[RowFailure] = field(default_factory=list)


def read_csv(
    lines: Iterable[str], category_ids: Mapping[str, str], tally: Tally | None = None
) -> Iterator[Item]:
    """Products as their last row is read; the rows of a product that has a bad row are
    reported and the product is not sent (half a product would replace the whole one)."""
    tally = tally or Tally()
    reader = csv.DictReader(lines)
    required = {"code", "sku", "title_ja"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise ImportFileError(f"CSV needs the columns {sorted(required)}")
    current: _Product | None = None
    first_rows: dict[str, int] = {}  # code → its first row, to catch non-adjacent rows
    number = 1
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            tally.rows = number - 1
            yield RowFailure(number, "", "", "ROW_INVALID", f"unreadable CSV: {error}")
            continue
        except UnicodeDecodeError as error:
            raise ImportFileError(f"not UTF-8 near row {number}: {error.reason}") from None
        tally.rows = number - 1  # data rows; the header is row 1
        code = (row.get("code") or "").strip()
        if current is None or code != current.code:
            if current is not None:
                yield from _finish(current)
                current = None
            if not code:
                yield RowFailure(number, "", "code", "REQUIRED_FIELD_MISSING", "is required")
                continue
            if code in first_rows:
                yield RowFailure(
                    number,
                    code,
                    "code",
                    "ROWS_NOT_ADJACENT",
                    f"the rows of a product must be adjacent (it began at row {first_rows[code]})",
                )
                continue
            first_rows[code] = number
            current = _Product(code, api.ImportProductsRequest(row_number=number))
            current.request.product.code = code
            current.failures.extend(_product_columns(current.request, row, number, category_ids))
        current.failures.extend(_variant_columns(current.request, row, number))
    if current is not None:
        yield from _finish(current)


def _finish(product: _Product) -> Iterator[Item]:
    if product.failures:
        yield from product.failures
    else:
        yield product.request


def _product_columns(
    request: api.ImportProductsRequest,
    row: Mapping[str, str | None],
    number: int,
    category_ids: Mapping[str, str],
) -> list[RowFailure]:
    product = request.product
    code = product.code
    failures = []
    for language in ("ja", "en"):
        if row.get(f"title_{language}"):
            product.titles.translations[language] = row[f"title_{language}"] or ""
        if row.get(f"description_{language}"):
            product.descriptions.translations[language] = row[f"description_{language}"] or ""
    product.brand = (row.get("brand") or "").strip()
    for slug in filter(None, (s.strip() for s in (row.get("categories") or "").split("|"))):
        category_id = category_ids.get(slug)
        if category_id is None:
            failures.append(
                RowFailure(
                    number, code, "categories", "CATEGORY_NOT_FOUND", f"no category {slug!r}"
                )
            )
        elif category_id == AMBIGUOUS:
            failures.append(
                RowFailure(
                    number,
                    code,
                    "categories",
                    "CATEGORY_AMBIGUOUS",
                    f"several categories are called {slug!r}: write its path, parent/{slug}",
                )
            )
        else:
            product.category_ids.append(category_id)
    for channel in filter(
        None, (c.strip().upper() for c in (row.get("channels") or "").split("|"))
    ):
        if channel not in CHANNELS:
            failures.append(
                RowFailure(
                    number,
                    code,
                    "channels",
                    "CHANNEL_UNKNOWN",
                    f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})",
                )
            )
        else:
            product.channels.append(common_pb2.Channel.Value(f"CHANNEL_{channel}"))
    status = (row.get("status") or "").strip().upper()
    if status and status not in STATUSES:
        failures.append(
            RowFailure(
                number,
                code,
                "status",
                "STATUS_INVALID",
                f"unknown status {status!r} (one of {', '.join(STATUSES)})",
            )
        )
    elif status:
        product.status = pb.ProductStatus.Value(f"PRODUCT_STATUS_{status}")
    return failures


def _variant_columns(
    request: api.ImportProductsRequest, row: Mapping[str, str | None], number: int
) -> list[RowFailure]:
    code = request.product.code
    sku = (row.get("sku") or "").strip()
    if not sku:
        return [RowFailure(number, code, "sku", "REQUIRED_FIELD_MISSING", "is required")]
    variant = request.product.variants.add(sku=sku)
    for option in ("color", "size"):
        if row.get(option):
            variant.options[option] = (row[option] or "").strip()
    jan = (row.get("jan") or "").strip()
    if jan:
        variant.barcodes.add(type=pb.BARCODE_TYPE_JAN, value=jan)
    price = (row.get("price_jpy") or "").strip()
    if price:
        digits = price.replace(",", "")
        if not digits.isascii() or not digits.isdigit():
            return [
                RowFailure(
                    number, code, "price_jpy", "PRICE_INVALID", f"whole yen expected, not {price!r}"
                )
            ]
        request.regular_prices_jpy[sku] = int(digits)
    return []


# ---------------------------------------------------------------------------- progress


class Progress:
    """Rows done, rows per second and errors so far. On a terminal one line redrawn in
    place; otherwise (a log, a pipe) a plain line every ``interval`` seconds."""

    def __init__(
        self,
        out: TextIO,
        *,
        interactive: bool,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.interactive = interactive
        self.interval = interval if interval is not None else (0.25 if interactive else 10.0)
        self.clock = clock
        self.started = clock()
        self._shown_at: float | None = None
        self._line_open = False

    def text(self, rows: int, errors: int) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        return f"{rows:,} rows, {rows / elapsed:,.0f} rows/s, {errors:,} errors"

    def update(self, rows: int, errors: int) -> None:
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        if self.interactive:
            self.out.write(f"\r{self.text(rows, errors)}\x1b[K")
            self._line_open = True
        else:
            self.out.write(f"progress: {self.text(rows, errors)}\n")
        self.out.flush()

    def say(self, line: str) -> None:
        """A line of its own (a bad row), above the progress line."""
        if self._line_open:
            self.out.write("\r\x1b[K")
            self._line_open = False
            self._shown_at = None  # redraw the progress line at the next update
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self._line_open = False
        self.out.flush()


# ------------------------------------------------------------------------------ import


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    failures: list[RowFailure] = field(default_factory=list)
    seconds: float = 0.0
    # Failures the service counted but did not list (it lists at most 1000 per call).
    unlisted: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures) + self.unlisted


async def category_ids(
    stub: catalog_service_pb2_grpc.CatalogServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    *,
    page_size: int = CATEGORY_PAGE_SIZE,
) -> dict[str, str]:
    """Every category by slug and by path (``parent/child``), all pages. A slug several
    categories share maps to :data:`AMBIGUOUS`: only its path names one."""
    paths: dict[str, str] = {}  # id → path
    ids: dict[str, str] = {}
    token = ""
    while True:
        page = await stub.ListCategories(
            api.ListCategoriesRequest(page_size=page_size, page_token=token),
            metadata=metadata,
            timeout=30,
        )
        for category in page.categories:  # parents come before their children
            parent = paths.get(category.parent_id)
            path = f"{parent}/{category.slug}" if parent else category.slug
            paths[category.id] = path
            ids[path] = category.id
            known = ids.get(category.slug)
            ids[category.slug] = category.id if known in (None, category.id) else AMBIGUOUS
        token = page.next_page_token
        if not token:
            return ids


async def import_file(
    path: Path,
    target: str,
    token: str,
    *,
    out: TextIO | None = None,
    interactive: bool | None = None,
    batch_size: int = BATCH_SIZE,
    category_page_size: int = CATEGORY_PAGE_SIZE,
) -> ImportReport:
    out = out or sys.stdout
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ImportFileError("the file must end in .csv or .jsonl")
    progress = Progress(out, interactive=out.isatty() if interactive is None else interactive)
    report = ImportReport()
    tally = Tally()
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        categories = (
            await category_ids(stub, metadata, page_size=category_page_size)
            if suffix == ".csv"
            else {}
        )

        def failed(failure: RowFailure) -> None:
            report.failures.append(failure)
            progress.say(str(failure))

        async def send(batch: list[api.ImportProductsRequest]) -> None:
            summary = await stub.ImportProducts(iter(batch), metadata=metadata, timeout=600)
            report.created += summary.created
            report.updated += summary.updated
            report.unlisted += summary.failed - len(summary.failures)
            for f in summary.failures:
                failed(RowFailure(f.row_number, f.code, f.field, f.reason, f.message))

        try:
            with path.open(encoding="utf-8", newline="") as handle:
                items = (
                    read_csv(handle, categories, tally)
                    if suffix == ".csv"
                    else read_jsonl(handle, tally)
                )
                batch: list[api.ImportProductsRequest] = []
                for item in items:
                    if isinstance(item, RowFailure):
                        failed(item)
                    else:
                        batch.append(item)
                        if len(batch) >= batch_size:
                            await send(batch)
                            batch = []
                    progress.update(tally.rows, report.failed)
                if batch:
                    await send(batch)
        except UnicodeDecodeError as error:
            raise ImportFileError(f"not UTF-8 after row {tally.rows}: {error.reason}") from None
        finally:
            report.rows = tally.rows
            report.seconds = progress.clock() - progress.started
            progress.close()
    return report


def summary_text(report: ImportReport) -> str:
    rate = report.rows / max(report.seconds, 1e-6)
    return (
        f"{report.rows:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s): "
        f"created {report.created}, updated {report.updated}, failed {report.failed}"
    )
