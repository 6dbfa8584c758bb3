"""Promotion repository: promotions, codes and redemptions, rows ⇄ domain objects."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart.domain.promotions import (
    BudgetPeriod,
    DiscountKind,
    Promotion,
    PromotionCode,
    RedemptionState,
    Trigger,
    Usage,
)
from services.cart.models import promotion_codes, promotions, redemptions

_LIVE = sa.or_(
    redemptions.c.state == int(RedemptionState.COMMITTED),
    sa.and_(
        redemptions.c.state == int(RedemptionState.RESERVED),
        redemptions.c.expires_at > sa.func.now(),
    ),
)


@dataclass(frozen=True)
class Redemption:
    id: uuid.UUID
    promotion_id: uuid.UUID
    code: str | None
    order_id: str
    cart_id: uuid.UUID
    customer_id: str | None
    amount: int
    state: RedemptionState
    expires_at: datetime


def _promotion_values(p: Promotion) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "trigger": int(p.trigger),
        "kind": int(p.kind),
        "code": p.code,
        "percent_off": p.percent_off,
        "amount_off": p.amount_off,
        "buy_quantity": p.buy_quantity,
        "get_quantity": p.get_quantity,
        "skus": sorted(p.skus),
        "product_ids": sorted(p.product_ids),
        "category_ids": sorted(p.category_ids),
        "minimum_subtotal": p.minimum_subtotal,
        "channels": sorted(p.channels),
        "store_ids": sorted(p.store_ids),
        "valid_from": p.valid_from,
        "valid_until": p.valid_until,
        "priority": p.priority,
        "stop_further": p.stop_further,
        "usage_limit": p.usage_limit,
        "usage_limit_per_customer": p.usage_limit_per_customer,
        "budget_amount": p.budget_amount,
        "budget_redemptions": p.budget_redemptions,
        "budget_period": int(p.budget_period),
        "active": p.active,
        "version": p.version,
    }


def _promotion(row: Any) -> Promotion:
    return Promotion(
        id=row.id,
        title=row.title,
        trigger=Trigger(row.trigger),
        kind=DiscountKind(row.kind),
        code=row.code,
        percent_off=row.percent_off,
        amount_off=row.amount_off,
        buy_quantity=row.buy_quantity,
        get_quantity=row.get_quantity,
        skus=frozenset(row.skus),
        product_ids=frozenset(row.product_ids),
        category_ids=frozenset(row.category_ids),
        minimum_subtotal=row.minimum_subtotal,
        channels=frozenset(row.channels),
        store_ids=frozenset(row.store_ids),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        priority=row.priority,
        stop_further=row.stop_further,
        usage_limit=row.usage_limit,
        usage_limit_per_customer=row.usage_limit_per_customer,
        budget_amount=row.budget_amount,
        budget_redemptions=row.budget_redemptions,
        budget_period=BudgetPeriod(row.budget_period),
        active=row.active,
        version=row.version,
        created_at=row.created_at,
    )


def _redemption(row: Any) -> Redemption:
    return Redemption(
        id=row.id,
        promotion_id=row.promotion_id,
        code=row.code,
        order_id=row.order_id,
        cart_id=row.cart_id,
        customer_id=row.customer_id,
        amount=row.amount,
        state=RedemptionState(row.state),
        expires_at=row.expires_at,
    )


class PromotionStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- promotions --------------------------------------------------------------------------

    async def insert(self, promotion: Promotion) -> None:
        await self.session.execute(sa.insert(promotions).values(_promotion_values(promotion)))

    async def update(self, promotion: Promotion) -> None:
        values = _promotion_values(promotion)
        del values["id"]
        await self.session.execute(
            sa.update(promotions).where(promotions.c.id == promotion.id).values(values)
        )

    async def get(self, promotion_id: uuid.UUID, *, lock: bool = False) -> Promotion | None:
        query = sa.select(promotions).where(promotions.c.id == promotion_id)
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _promotion(row) if row else None

    async def lock_many(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Promotion]:
        """Lock promotions in id order: every reservation takes them in the same order, so
        two checkouts sharing promotions cannot deadlock."""
        rows = (
            await self.session.execute(
                sa.select(promotions)
                .where(promotions.c.id.in_(list(ids)))
                .order_by(promotions.c.id)
                .with_for_update()
            )
        ).all()
        return {row.id: _promotion(row) for row in rows}

    async def page(self, after: tuple[int, str] | None, limit: int) -> list[Promotion]:
        query = sa.select(promotions).order_by(promotions.c.priority, promotions.c.id).limit(limit)
        if after is not None:
            query = query.where(
                sa.tuple_(promotions.c.priority, sa.cast(promotions.c.id, sa.Text))
                > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        return [_promotion(row) for row in (await self.session.execute(query)).all()]

    async def automatic(self, now: datetime) -> list[Promotion]:
        """Active automatic promotions in their window (channels and stores are checked by
        the domain)."""
        rows = (
            await self.session.execute(
                sa.select(promotions).where(
                    promotions.c.trigger == int(Trigger.AUTOMATIC),
                    promotions.c.active.is_(True),
                    sa.or_(promotions.c.valid_from.is_(None), promotions.c.valid_from <= now),
                    sa.or_(promotions.c.valid_until.is_(None), promotions.c.valid_until > now),
                )
            )
        ).all()
        return [_promotion(row) for row in rows]

    async def by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Promotion]:
        if not ids:
            return {}
        rows = (
            await self.session.execute(sa.select(promotions).where(promotions.c.id.in_(list(ids))))
        ).all()
        return {row.id: _promotion(row) for row in rows}

    # -- codes -------------------------------------------------------------------------------

    async def insert_code(self, code: PromotionCode) -> bool:
        """False when the code exists already (a generated code collided)."""
        inserted = (
            await self.session.execute(
                pg.insert(promotion_codes)
                .values(
                    code=code.code,
                    promotion_id=code.promotion_id,
                    customer_id=code.customer_id,
                    skus=sorted(code.skus),
                    expires_at=code.expires_at,
                )
                .on_conflict_do_nothing()
                .returning(promotion_codes.c.code)
            )
        ).first()
        return inserted is not None

    async def find_codes(self, texts: Sequence[str]) -> dict[str, PromotionCode]:
        """Codes by their text: personal codes (with whether an order holds them) and the
        public codes of code promotions. A personal code's text cannot equal a public one:
        creating a promotion checks both tables."""
        if not texts:
            return {}
        wanted = list(texts)
        used = (
            sa.select(redemptions.c.id)
            .where(redemptions.c.code == promotion_codes.c.code, _LIVE)
            .exists()
        )
        found: dict[str, PromotionCode] = {}
        for row in (
            await self.session.execute(
                sa.select(promotion_codes, used.label("used")).where(
                    promotion_codes.c.code.in_(wanted)
                )
            )
        ).all():
            found[row.code] = PromotionCode(
                code=row.code,
                promotion_id=row.promotion_id,
                customer_id=row.customer_id,
                skus=frozenset(row.skus),
                expires_at=row.expires_at,
                used=bool(row.used),
            )
        for row in (
            await self.session.execute(
                sa.select(promotions.c.id, promotions.c.code).where(
                    promotions.c.code.in_(wanted), promotions.c.trigger == int(Trigger.CODE)
                )
            )
        ).all():
            found.setdefault(row.code, PromotionCode(code=row.code, promotion_id=row.id))
        return found

    async def code_taken(self, code: str) -> bool:
        in_codes = sa.select(promotion_codes.c.code).where(promotion_codes.c.code == code)
        in_promotions = sa.select(promotions.c.code).where(promotions.c.code == code)
        row = (await self.session.execute(in_codes.union_all(in_promotions).limit(1))).first()
        return row is not None

    async def lock_code(self, code: str) -> None:
        """Serialize uses of one personal code."""
        await self.session.execute(
            sa.select(promotion_codes.c.code)
            .where(promotion_codes.c.code == code)
            .with_for_update()
        )

    async def forget_customer(self, customer_id: str) -> None:
        """Erasure: the customer's personal codes go; redemptions stay for accounting,
        without the customer id."""
        await self.session.execute(
            sa.delete(promotion_codes).where(promotion_codes.c.customer_id == customer_id)
        )
        await self.session.execute(
            sa.update(redemptions)
            .where(redemptions.c.customer_id == customer_id)
            .values(customer_id=None)
        )

    # -- redemptions -------------------------------------------------------------------------

    async def usage(
        self,
        promotion_id: uuid.UUID,
        *,
        code: str | None,
        customer_id: str | None,
        period_start: datetime | None,
    ) -> Usage:
        """Live uses of a promotion; call with the promotion's row locked."""
        live = sa.and_(redemptions.c.promotion_id == promotion_id, _LIVE)
        in_period = (
            live
            if period_start is None
            else sa.and_(live, redemptions.c.created_at >= period_start)
        )
        customer = (
            sa.literal(False) if customer_id is None else redemptions.c.customer_id == customer_id
        )
        same_code = sa.literal(False) if code is None else redemptions.c.code == code
        row = (
            await self.session.execute(
                sa.select(
                    sa.func.count().filter(live),
                    sa.func.count().filter(sa.and_(live, customer)),
                    sa.func.count().filter(in_period),
                    sa.func.coalesce(sa.func.sum(redemptions.c.amount).filter(in_period), 0),
                    sa.func.count().filter(sa.and_(live, same_code)),
                ).where(redemptions.c.promotion_id == promotion_id)
            )
        ).one()
        return Usage(
            total=row[0],
            by_customer=row[1],
            in_period=row[2],
            amount_in_period=int(row[3]),
            code_used=row[4] > 0,
        )

    async def for_order(self, order_id: str, *, lock: bool = False) -> list[Redemption]:
        query = (
            sa.select(redemptions)
            .where(redemptions.c.order_id == order_id)
            .order_by(redemptions.c.promotion_id)
        )
        if lock:
            query = query.with_for_update()
        return [_redemption(row) for row in (await self.session.execute(query)).all()]

    async def insert_redemption(self, redemption: Redemption) -> None:
        await self.session.execute(
            sa.insert(redemptions).values(
                id=redemption.id,
                promotion_id=redemption.promotion_id,
                code=redemption.code,
                order_id=redemption.order_id,
                cart_id=redemption.cart_id,
                customer_id=redemption.customer_id,
                amount=redemption.amount,
                state=int(redemption.state),
                expires_at=redemption.expires_at,
            )
        )

    async def set_state(self, ids: Sequence[uuid.UUID], state: RedemptionState) -> None:
        await self.session.execute(
            sa.update(redemptions)
            .where(redemptions.c.id.in_(list(ids)))
            .values(state=int(state), updated_at=sa.func.now())
        )
