"""Order projection and earnings persistence: orders learnt from events, returns seen, what
each order earns. Locks follow loyalty's order: the account row first (the caller holds it),
then these rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.domain import earning as ed
from services.customer.domain import loyalty as ld
from services.customer.models import (
    customer_orders,
    loyalty_accounts,
    loyalty_earnings,
    order_returns,
)
from services.customer.store.loyalty import account_from_row

_O, _G, _X, _A = customer_orders.c, loyalty_earnings.c, order_returns.c, loyalty_accounts.c


def _order(row: Any) -> ed.OrderRecord:
    return ed.OrderRecord(
        order_id=row.order_id,
        customer_id=row.customer_id,
        order_number=row.order_number,
        channel=row.channel,
        store_id=row.store_id,
        total_yen=row.total_yen,
        units=row.units,
        returned_yen=row.returned_yen,
        returned_units=row.returned_units,
        cancelled=row.cancelled,
        placed_at=row.placed_at,
    )


def _earning(row: Any) -> ed.Earning:
    return ed.Earning(
        order_id=row.order_id,
        customer_id=row.customer_id,
        state=ed.EarningState(row.state),
        points=row.points,
        bonus_points=row.bonus_points,
        reversed=row.reversed,
        channel=row.channel,
        store_id=row.store_id,
        tier=row.tier,
        available_at=row.available_at,
        created_at=row.created_at,
        entry_id=row.entry_id,
        entry_points=row.entry_points,
    )


class OrderStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------------ projection

    async def record_order(self, facts: ed.OrderFacts) -> bool:
        """False if the order was already known (a second event for it changes nothing)."""
        inserted = await self.session.execute(
            pg.insert(customer_orders)
            .values(
                order_id=facts.order_id,
                customer_id=facts.customer_id,
                order_number=facts.order_number,
                channel=facts.channel,
                store_id=facts.store_id,
                total_yen=facts.total_yen,
                units=facts.units,
                placed_at=facts.placed_at,
            )
            .on_conflict_do_nothing(index_elements=["order_id"])
            .returning(_O.order_id)
        )
        return inserted.first() is not None

    async def order(self, order_id: str) -> ed.OrderRecord | None:
        row = (
            await self.session.execute(
                sa.select(customer_orders).where(_O.order_id == order_id).with_for_update()
            )
        ).first()
        return _order(row) if row else None

    async def order_unlocked(self, order_id: str) -> ed.OrderRecord | None:
        """To learn whose order it is before locking in the lock order."""
        row = (
            await self.session.execute(sa.select(customer_orders).where(_O.order_id == order_id))
        ).first()
        return _order(row) if row else None

    async def cancel(self, order_id: str) -> None:
        await self.session.execute(
            sa.update(customer_orders).where(_O.order_id == order_id).values(cancelled=True)
        )

    async def record_return(self, facts: ed.ReturnFacts, refund_yen: int) -> bool:
        """False if this return was seen before."""
        inserted = await self.session.execute(
            pg.insert(order_returns)
            .values(
                return_id=facts.return_id,
                order_id=facts.order_id,
                customer_id=facts.customer_id,
                refund_yen=refund_yen,
                units=facts.units,
                points_reversed=0,
                received_at=facts.received_at,
            )
            .on_conflict_do_nothing(index_elements=["return_id"])
            .returning(_X.return_id)
        )
        return inserted.first() is not None

    async def set_return_points(self, return_id: str, points: int) -> None:
        await self.session.execute(
            sa.update(order_returns).where(_X.return_id == return_id).values(points_reversed=points)
        )

    async def add_returned(self, order_id: str, yen: int, units: int) -> ed.OrderRecord:
        row = (
            await self.session.execute(
                sa.update(customer_orders)
                .where(_O.order_id == order_id)
                .values(
                    returned_yen=_O.returned_yen + yen, returned_units=_O.returned_units + units
                )
                .returning(*customer_orders.c)
            )
        ).one()
        return _order(row)

    async def spend_since(
        self, customer_id: uuid.UUID, since: datetime
    ) -> tuple[int, datetime | None]:
        """Spend (orders less returns, cancelled ones not at all) placed after ``since``,
        and when the oldest of those orders was placed."""
        row = (
            await self.session.execute(
                sa.select(
                    sa.func.coalesce(
                        sa.func.sum(sa.func.greatest(_O.total_yen - _O.returned_yen, 0)), 0
                    ).label("spend"),
                    sa.func.min(_O.placed_at).label("oldest"),
                ).where(_O.customer_id == customer_id, _O.placed_at > since, ~_O.cancelled)
            )
        ).one()
        return int(row.spend), row.oldest

    async def history(self, customer_id: uuid.UUID) -> tuple[int, datetime | None]:
        """Orders (not cancelled) the customer placed so far and when the last one was."""
        row = (
            await self.session.execute(
                sa.select(
                    sa.func.count().label("n"), sa.func.max(_O.placed_at).label("last")
                ).where(_O.customer_id == customer_id, ~_O.cancelled)
            )
        ).one()
        return int(row.n), row.last

    async def recent(self, customer_id: uuid.UUID, limit: int) -> list[ed.OrderRecord]:
        rows = await self.session.execute(
            sa.select(customer_orders)
            .where(_O.customer_id == customer_id)
            .order_by(_O.placed_at.desc(), _O.order_id)
            .limit(limit)
        )
        return [_order(row) for row in rows]

    # -------------------------------------------------------------------------- earnings

    async def insert_earning(self, earning: ed.Earning) -> None:
        await self.session.execute(
            sa.insert(loyalty_earnings).values(
                order_id=earning.order_id,
                customer_id=earning.customer_id,
                state=int(earning.state),
                points=earning.points,
                bonus_points=earning.bonus_points,
                reversed=earning.reversed,
                channel=earning.channel,
                store_id=earning.store_id,
                tier=earning.tier,
                available_at=earning.available_at,
                created_at=earning.created_at,
            )
        )

    async def earning(self, order_id: str) -> ed.Earning | None:
        row = (
            await self.session.execute(
                sa.select(loyalty_earnings).where(_G.order_id == order_id).with_for_update()
            )
        ).first()
        return _earning(row) if row else None

    async def earnings_of(self, order_ids: list[str]) -> dict[str, ed.Earning]:
        if not order_ids:
            return {}
        rows = await self.session.execute(
            sa.select(loyalty_earnings).where(_G.order_id.in_(order_ids))
        )
        return {row.order_id: _earning(row) for row in rows}

    async def earning_of_entry(self, entry_id: uuid.UUID) -> ed.Earning | None:
        row = (
            await self.session.execute(
                sa.select(loyalty_earnings).where(_G.entry_id == entry_id).with_for_update()
            )
        ).first()
        return _earning(row) if row else None

    async def update_earning(self, order_id: str, **values: Any) -> None:
        if "state" in values:
            values["state"] = int(values["state"])
        await self.session.execute(
            sa.update(loyalty_earnings).where(_G.order_id == order_id).values(**values)
        )

    async def due_earnings(self, customer_id: uuid.UUID, now: datetime) -> list[ed.Earning]:
        rows = await self.session.execute(
            sa.select(loyalty_earnings)
            .where(
                _G.customer_id == customer_id,
                _G.state == int(ed.EarningState.PENDING),
                _G.available_at <= now,
            )
            .order_by(_G.available_at, _G.order_id)
            .with_for_update()
        )
        return [_earning(row) for row in rows]

    async def earnings(self, customer_id: uuid.UUID, limit: int) -> list[ed.Earning]:
        rows = await self.session.execute(
            sa.select(loyalty_earnings)
            .where(_G.customer_id == customer_id)
            .order_by(_G.created_at.desc(), _G.order_id)
            .limit(limit)
        )
        return [_earning(row) for row in rows]

    # -------------------------------------------------------------------------- accounts

    async def change_pending(self, customer_id: uuid.UUID, delta: int, now: datetime) -> ld.Account:
        row = (
            await self.session.execute(
                sa.update(loyalty_accounts)
                .where(_A.customer_id == customer_id)
                .values(pending=_A.pending + delta, version=_A.version + 1, updated_at=now)
                .returning(*loyalty_accounts.c)
            )
        ).one()
        return account_from_row(row)

    async def set_review(self, customer_id: uuid.UUID, review_at: datetime | None) -> None:
        await self.session.execute(
            sa.update(loyalty_accounts)
            .where(_A.customer_id == customer_id)
            .values(tier_review_at=review_at)
        )

    async def set_tier(
        self,
        customer_id: uuid.UUID,
        *,
        tier: str,
        keep_until: datetime | None,
        review_at: datetime | None,
        spend: int,
        now: datetime,
    ) -> ld.Account:
        row = (
            await self.session.execute(
                sa.update(loyalty_accounts)
                .where(_A.customer_id == customer_id)
                .values(
                    tier=tier,
                    tier_keep_until=keep_until,
                    tier_review_at=review_at,
                    twelve_month_spend=spend,
                    version=_A.version + 1,
                    updated_at=now,
                )
                .returning(*loyalty_accounts.c)
            )
        ).one()
        return account_from_row(row)
