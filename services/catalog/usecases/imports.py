"""Catalog use cases: the bulk import's rows and its summary. Each row succeeds or fails on
its own; a failed row is reported (row number, code, reason, message) and the import goes on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.catalog import domain as d
from tenpo.kit.errors import DomainError

#: Failures listed in the summary (all are counted): a file of a million bad rows must not
#: produce a response larger than the gRPC message limit.
MAX_FAILURES_LISTED = 1000


@dataclass(frozen=True)
class ImportRowData:
    fields: Mapping[str, Any]
    status: d.ProductStatus | None
    regular_prices_jpy: Mapping[str, int]


@dataclass(frozen=True)
class ImportRow:
    row_number: int
    code: str
    # Translating the row can fail too (a malformed id): that is this row's failure, so it
    # runs inside the import's per-row policy.
    read: Callable[[], ImportRowData]


@dataclass(frozen=True)
class ImportFailure:
    row_number: int
    code: str
    reason: str
    message: str
    field: str = ""


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    failed: int = 0
    failures: list[ImportFailure] = field(default_factory=list)

    def succeeded(self, created: bool) -> None:
        if created:
            self.created += 1
        else:
            self.updated += 1

    def fail(self, row: ImportRow, error: DomainError) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            detail = "; ".join(f"{v.field}: {v.description}" for v in error.field_violations)
            message = f"{error.message} ({detail})" if detail else error.message
            first = error.field_violations[0].field if error.field_violations else ""
            self.failures.append(
                ImportFailure(row.row_number, row.code, error.reason, message, first)
            )
