"""GDPR export (art. 15 and 20) as every service answers it: who may export whose data, the
rows about a customer as JSON, and the document around them.

Each service keeps its own export use case (it knows its tables); this module is the one
place for the rules they share, so the customer service can put their documents together
into one (``tenpo.customer.v1.CustomerService.ExportCustomerData``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import FieldViolation, InvalidArgument, PermissionDenied

#: Staff and services export a customer's data with this scope.
EXPORT_SCOPE = "customers:read"
#: A customer exports her own with this one (sessions handed to store devices lack it).
CUSTOMER_EXPORT_SCOPE = "profile:write"
SELF = "me"
CONTENT_TYPE = "application/json"


def export_subject(principal: Principal, customer_ref: str, path: str = "customer_id") -> str:
    """The customer id an export is for, if the caller may have it: the customer herself
    ("me" or her id), or staff and services with ``customers:read`` naming a customer id.
    A stranger's id is PERMISSION_DENIED whether or not the customer exists (AIP-193)."""
    principal.require_authenticated()
    ref = customer_ref.strip()
    if not ref:
        raise _invalid(path, "is required: a customer id, or 'me'", "CUSTOMER_ID_REQUIRED")
    if principal.kind is PrincipalKind.CUSTOMER:
        if ref not in (SELF, principal.subject):
            raise PermissionDenied(
                "a customer may only export their own data", reason="NOT_RESOURCE_OWNER"
            )
        principal.require_scope(CUSTOMER_EXPORT_SCOPE)
        return principal.subject
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(EXPORT_SCOPE)
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        raise _invalid(path, "a customer id (UUID)", "ID_INVALID") from None


def json_value(value: object) -> object:
    """A column value as JSON: ids and times as strings, bytes never (they hold hashes)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


async def rows(
    session: AsyncSession,
    table: sa.Table,
    where: sa.ColumnElement[bool],
    *,
    leave_out: Collection[str] = (),
) -> list[dict[str, object]]:
    """The table's rows matching ``where``, without the columns in ``leave_out``
    (credentials, message bodies that may hold links with secrets), oldest first."""
    shown = [c for c in table.c if c.name not in leave_out]
    query = sa.select(*shown).where(where)
    if "created_at" in table.c:
        query = query.order_by(table.c.created_at)
    result = await session.execute(query)
    return [{k: json_value(v) for k, v in row.items()} for row in result.mappings()]


def document(
    service: str,
    customer_id: str,
    tables: Mapping[str, Sequence[Mapping[str, object]]],
    now: datetime,
    *,
    left_out: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The export of one service: ``{"service", "customer_id", "exported_at", "tables",
    "left_out"}`` (``left_out``: the columns withheld per table, and why in the service's
    README)."""
    return json.dumps(
        {
            "service": service,
            "customer_id": customer_id,
            "exported_at": now.astimezone(UTC).isoformat(),
            "tables": {name: list(found) for name, found in tables.items()},
            "left_out": {k: sorted(v) for k, v in (left_out or {}).items()},
        },
        ensure_ascii=False,
        indent=2,
        sort_keys=True,
        default=str,
    )


def _invalid(path: str, description: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(path, description)],
    )


def parse(document_json: str) -> dict[str, Any]:
    """A service's export document back as a mapping (for the customer service's merge)."""
    found = json.loads(document_json)
    if not isinstance(found, dict):
        raise ValueError("an export document is a JSON object")
    return found
