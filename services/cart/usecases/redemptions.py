"""Redemption use cases for the order saga: reserve a cart's discounts for an order, then
commit or release them.

A reservation locks the promotions involved (in id order) and counts their live uses under
the lock, so limits hold under any concurrency: of 100 checkouts racing for one single-use
code, one reserves it and 99 get CODE_ALREADY_USED. A reservation not committed within its
TTL stops counting, so a crashed saga never strands a code."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.cart.domain.promotions import (
    RedemptionState,
    budget_period_start,
    check_redemption,
)
from services.cart.events import redeemed_event
from services.cart.store.carts import CartStore
from services.cart.store.promotions import PromotionStore, Redemption
from services.cart.usecases import access
from services.cart.usecases.carts import Carts
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    check_etag,
    require_fields,
)
from tenpo.kit.idempotency import idempotent

DEFAULT_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(hours=1)
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def require_redeemer(principal: Principal) -> None:
    principal.require_any_kind(PrincipalKind.SERVICE, PrincipalKind.STAFF)
    principal.require_scope(access.REDEEM_SCOPE)


def _check_order_id(order_id: str) -> None:
    require_fields(order_id=order_id)
    if len(order_id) > 128:
        raise InvalidArgument(
            "order_id is too long",
            reason="ORDER_ID_INVALID",
            field_violations=[FieldViolation("order_id", "at most 128 characters")],
        )


class Redemptions:
    def __init__(
        self,
        db: Database,
        carts: Carts,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.carts = carts
        self.clock = clock

    def authorize(self, principal: Principal) -> None:
        require_redeemer(principal)

    async def reserve(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        etag: str,
        order_id: str,
        ttl: timedelta | None,
        request_id: str,
        request: Message,
    ) -> list[Redemption]:
        require_redeemer(principal)
        _check_order_id(order_id)
        require_fields(etag=etag)
        hold = ttl or DEFAULT_TTL
        if hold <= timedelta(0) or hold > MAX_TTL:
            raise InvalidArgument(
                "ttl must be more than 0 and at most 1 h",
                reason="TTL_INVALID",
                field_violations=[FieldViolation("ttl", "more than 0, at most 1 h")],
            )

        async def reserve() -> wrappers_pb2.StringValue:
            store = PromotionStore(uow.session)
            if await store.for_order(order_id):
                return wrappers_pb2.StringValue(value=order_id)  # reserved by an earlier call
            cart = await CartStore(uow.session).get(cart_id)
            if cart is None:
                raise access.cart_not_found()
            cart.require_active()
            check_etag(etag, cart.etag, "cart")
            # The discounts the customer was shown: a personal code counts as unused here,
            # so that a use taken meanwhile fails the reservation below (CODE_ALREADY_USED)
            # instead of silently dropping the discount from the order.
            view = await self.carts.view(uow.session, cart, codes_unused=True)
            applied = view.totals.applied
            locked = await store.lock_many(sorted({a.promotion_id for a in applied}))
            codes = await store.find_codes([a.code for a in applied if a.code])
            now = self.clock()
            for discount in applied:
                promotion = locked[discount.promotion_id]
                code = codes.get(discount.code) if discount.code else None
                if not promotion.active or not promotion.in_window(now):
                    raise FailedPrecondition(
                        "the promotion ended",
                        reason="PROMOTION_NOT_ACTIVE",
                        metadata={"promotion_id": str(promotion.id)},
                    )
                usage = await store.usage(
                    promotion.id,
                    code=code.code if code and code.personal else None,
                    customer_id=cart.customer_id,
                    period_start=budget_period_start(promotion.budget_period, now),
                )
                check_redemption(
                    promotion,
                    replace(code, used=False) if code else None,
                    usage,
                    discount.amount,
                    cart.customer_id,
                )
                await store.insert_redemption(
                    Redemption(
                        id=uuid.uuid4(),
                        promotion_id=promotion.id,
                        code=discount.code,
                        order_id=order_id,
                        cart_id=cart.id,
                        customer_id=cart.customer_id,
                        amount=discount.amount,
                        state=RedemptionState.RESERVED,
                        expires_at=now + hold,
                    )
                )
            return wrappers_pb2.StringValue(value=order_id)

        async with self.db.unit_of_work() as uow:
            await idempotent(
                uow,
                scope=f"ReserveRedemptions:{order_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=reserve,
            )
            await uow.commit()
        return await self.for_order(order_id)

    async def for_order(self, order_id: str) -> list[Redemption]:
        async with self.db.unit_of_work() as uow:
            return await PromotionStore(uow.session).for_order(order_id)

    async def commit(self, principal: Principal, order_id: str) -> list[Redemption]:
        """Commit every reserved redemption of the order (again: no change). An expired
        reservation may have been taken by someone else: REDEMPTION_EXPIRED."""
        require_redeemer(principal)
        _check_order_id(order_id)
        async with self.db.unit_of_work() as uow:
            store = PromotionStore(uow.session)
            found = await store.for_order(order_id, lock=True)
            now = self.clock()
            pending = [r for r in found if r.state is RedemptionState.RESERVED]
            if any(r.state is RedemptionState.RELEASED for r in found):
                raise FailedPrecondition(
                    "the order's redemptions were released", reason="REDEMPTION_RELEASED"
                )
            if any(r.expires_at <= now for r in pending):
                raise FailedPrecondition(
                    "the reservation expired; reserve again", reason="REDEMPTION_EXPIRED"
                )
            await store.set_state([r.id for r in pending], RedemptionState.COMMITTED)
            for r in pending:
                uow.add_event(
                    redeemed_event(str(r.promotion_id), r.code, order_id, r.customer_id, r.amount)
                )
            await uow.commit()
        return await self.for_order(order_id)

    async def release(self, principal: Principal, order_id: str) -> list[Redemption]:
        """Give the order's reserved uses back (again: no change). Committed ones stay."""
        require_redeemer(principal)
        _check_order_id(order_id)
        async with self.db.unit_of_work() as uow:
            store = PromotionStore(uow.session)
            found = await store.for_order(order_id, lock=True)
            if any(r.state is RedemptionState.COMMITTED for r in found):
                raise FailedPrecondition(
                    "the order's redemptions are committed", reason="REDEMPTION_COMMITTED"
                )
            pending = [r.id for r in found if r.state is RedemptionState.RESERVED]
            await store.set_state(pending, RedemptionState.RELEASED)
            await uow.commit()
        return await self.for_order(order_id)

    async def return_(
        self, principal: Principal, order_id: str, reason: str, request_id: str, request: Message
    ) -> list[Redemption]:
        """Give the order's committed uses back (an order cancelled unpaid) and release
        reserved ones: none counts against limits or budgets any more, a personal code is
        usable again. Again: no change (the states say it is done), so a retry with any
        request_id is safe; the request_id makes a reused one with another order an error."""
        require_redeemer(principal)
        _check_order_id(order_id)
        if reason and not _REASON.fullmatch(reason):
            raise InvalidArgument(
                "reason is UPPER_SNAKE_CASE, at most 64 characters",
                reason="REASON_INVALID",
                field_violations=[FieldViolation("reason", "UPPER_SNAKE_CASE, ≤ 64")],
            )

        async def give_back() -> wrappers_pb2.StringValue:
            store = PromotionStore(uow.session)
            found = await store.for_order(order_id, lock=True)
            committed = [r.id for r in found if r.state is RedemptionState.COMMITTED]
            reserved = [r.id for r in found if r.state is RedemptionState.RESERVED]
            await store.set_state(committed, RedemptionState.RETURNED)
            await store.set_state(reserved, RedemptionState.RELEASED)
            return wrappers_pb2.StringValue(value=order_id)

        async with self.db.unit_of_work() as uow:
            await idempotent(
                uow,
                scope="ReturnRedemptions",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=give_back,
            )
            await uow.commit()
        return await self.for_order(order_id)
