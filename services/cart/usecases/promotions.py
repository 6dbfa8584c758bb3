"""Promotion use cases: create, read, list and change promotions; issue personal codes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.cart.domain.promotions import (
    Promotion,
    PromotionCode,
    Trigger,
    new_personal_code,
    normalize_code,
)
from services.cart.events import personal_code_issued_event
from services.cart.store.promotions import PromotionStore
from services.cart.usecases.access import PROMOTIONS_WRITE_SCOPE
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    check_etag,
)
from tenpo.kit.idempotency import idempotent

DEFAULT_CODE_VALIDITY = timedelta(hours=48)
MAX_CODE_VALIDITY = timedelta(days=366)
#: Fields UpdatePromotion may change (the kind and scope of a live promotion stay: create a
#: new one instead, so redemptions keep meaning what they meant).
UPDATABLE = (
    "title",
    "active",
    "valid_from",
    "valid_until",
    "priority",
    "stop_further",
    "usage_limit",
    "usage_limit_per_customer",
    "budget_amount",
    "budget_redemptions",
)


def require_manager(principal: Principal) -> None:
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(PROMOTIONS_WRITE_SCOPE)


def _not_found() -> NotFound:
    return NotFound("no such promotion", reason="PROMOTION_NOT_FOUND")


class Promotions:
    def __init__(
        self,
        db: Database,
        *,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        #: Called after a write (the carts' cached automatic promotions are re-read).
        self.on_change = on_change
        self.clock = clock

    def authorize(self, principal: Principal) -> None:
        """Permission first, so a caller who may not write learns nothing from validation."""
        require_manager(principal)

    async def create(
        self, principal: Principal, promotion: Promotion, request_id: str, request: Message
    ) -> Promotion:
        require_manager(principal)
        if promotion.code:
            promotion = replace(promotion, code=normalize_code(promotion.code, "promotion.code"))
        promotion = replace(
            promotion, id=uuid.uuid4(), version=1, created_at=self.clock()
        ).validate()

        async def insert() -> wrappers_pb2.StringValue:
            store = PromotionStore(uow.session)
            if promotion.code and await store.code_taken(promotion.code):
                raise AlreadyExists(
                    "the code is taken", reason="CODE_TAKEN", metadata={"code": promotion.code}
                )
            await store.insert(promotion)
            return wrappers_pb2.StringValue(value=str(promotion.id))

        async with self.db.unit_of_work() as uow:
            created = await idempotent(
                uow,
                scope=f"CreatePromotion:{principal.subject}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=insert,
            )
            await uow.commit()
        self.on_change()
        return await self.get(principal, uuid.UUID(created.value))

    async def get(self, principal: Principal, promotion_id: uuid.UUID) -> Promotion:
        require_manager(principal)
        async with self.db.unit_of_work() as uow:
            found = await PromotionStore(uow.session).get(promotion_id)
        if found is None:
            raise _not_found()
        return found

    async def page(
        self, principal: Principal, after: tuple[int, str] | None, limit: int
    ) -> list[Promotion]:
        require_manager(principal)
        async with self.db.unit_of_work() as uow:
            return await PromotionStore(uow.session).page(after, limit)

    async def update(
        self,
        principal: Principal,
        promotion_id: uuid.UUID,
        paths: Sequence[str],
        values: dict[str, Any],
        etag: str,
        request_id: str,
        request: Message,
    ) -> Promotion:
        require_manager(principal)

        async def change() -> wrappers_pb2.StringValue:
            store = PromotionStore(uow.session)
            current = await store.get(promotion_id, lock=True)
            if current is None:
                raise _not_found()
            check_etag(etag, str(current.version), "promotion")
            changes = {path: values[path] for path in paths}
            updated = replace(current, **changes, version=current.version + 1).validate()
            await store.update(updated)
            return wrappers_pb2.StringValue(value=str(updated.version))

        async with self.db.unit_of_work() as uow:
            await idempotent(
                uow,
                scope=f"UpdatePromotion:{promotion_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=change,
            )
            await uow.commit()
        self.on_change()
        return await self.get(principal, promotion_id)

    async def issue_personal_code(
        self,
        principal: Principal,
        promotion_id: uuid.UUID,
        customer_id: str,
        valid_for: timedelta | None,
        skus: Sequence[str],
        request_id: str,
        request: Message,
    ) -> PromotionCode:
        """A single-use code for one customer, valid on every channel for ``valid_for``
        (48 h by default). A retry with the same request_id returns the same code."""
        require_manager(principal)
        violations = []
        if not customer_id or len(customer_id) > 128:
            violations.append(FieldViolation("customer_id", "1–128 characters"))
        validity = valid_for or DEFAULT_CODE_VALIDITY
        if validity <= timedelta(0) or validity > MAX_CODE_VALIDITY:
            violations.append(FieldViolation("valid_for", "more than 0, at most 366 days"))
        if len(skus) > 50 or any(not s or len(s) > 64 for s in skus):
            violations.append(FieldViolation("skus", "at most 50 SKUs of 1–64 characters"))
        if violations:
            raise InvalidArgument(
                "the personal code request is invalid",
                reason="PERSONAL_CODE_INVALID",
                field_violations=violations,
            )
        expires_at = self.clock() + validity

        async def issue() -> wrappers_pb2.StringValue:
            store = PromotionStore(uow.session)
            promotion = await store.get(promotion_id)
            if promotion is None:
                raise _not_found()
            if promotion.trigger is not Trigger.CODE:
                raise FailedPrecondition(
                    "personal codes belong to code promotions", reason="PROMOTION_NOT_CODE"
                )
            for _ in range(5):  # 59 bits: a collision is astronomically rare, never fatal
                code = PromotionCode(
                    code=new_personal_code(),
                    promotion_id=promotion_id,
                    customer_id=customer_id,
                    skus=frozenset(skus),
                    expires_at=expires_at,
                )
                if not await store.code_taken(code.code) and await store.insert_code(code):
                    break
            else:  # pragma: no cover - five collisions in a row
                raise RuntimeError("could not generate a unique code")
            uow.add_event(personal_code_issued_event(str(promotion_id), customer_id, expires_at))
            return wrappers_pb2.StringValue(value=code.code)

        async with self.db.unit_of_work() as uow:
            issued = await idempotent(
                uow,
                scope=f"IssuePersonalCode:{promotion_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=issue,
            )
            await uow.commit()
            found = (await PromotionStore(uow.session).find_codes([issued.value]))[issued.value]
        return found
