"""Catalog use cases: who is asking, who may write, and the bounds every batch obeys."""

from __future__ import annotations

import uuid
from collections.abc import Sized
from dataclasses import dataclass

from services.catalog import domain as d
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound

WRITE_SCOPE = "catalog:write"
MAX_BATCH = 200


@dataclass(frozen=True)
class Viewer:
    """Who is looking: staff see every state and channel; others their channel's published
    products."""

    staff: bool
    channel: int

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(staff=principal.is_staff, channel=principal.channel or d.DEFAULT_CHANNEL)


STAFF = Viewer(staff=True, channel=0)


def require_writer(principal: Principal) -> None:
    """Only back-office staff (or a trusted service) with catalog:write change the catalog."""
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(WRITE_SCOPE)


def bounded(name: str, values: Sized, limit: int) -> None:
    if len(values) > limit:
        raise InvalidArgument(
            f"at most {limit} {name}",
            reason="TOO_MANY_ITEMS",
            field_violations=[FieldViolation(name, f"at most {limit}")],
        )


def product_not_found(product_id: uuid.UUID) -> NotFound:
    return NotFound("no such product", reason="PRODUCT_NOT_FOUND", metadata={"id": str(product_id)})
