"""Catalog use cases: who is asking, who may write, and the bounds every batch obeys."""

from __future__ import annotations

import uuid
from collections.abc import Sized
from dataclasses import dataclass

from services.catalog import domain as d
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound
from tenpo.kit.limits import declared

WRITE_SCOPE = "catalog:write"
#: SKUs per BatchGetVariants / GetPrices: the contract's bound (``tenpo.common.v1.limits``).
MAX_BATCH = declared(catalog_api.BatchGetVariantsRequest, "skus").max_items or 200


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
