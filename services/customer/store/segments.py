"""Segments persistence: the facts segments are computed from (order projection, tier,
birthday), memberships, review times and birthday announcements.

Lock order: whoever holds the customer row or the loyalty account takes the segment_reviews
row last (``lock``), so every recompute of one customer is serialised without a cycle."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.domain import segments as sd
from services.customer.models import (
    birthday_announcements,
    customer_orders,
    customer_segments,
    customers,
    loyalty_accounts,
    segment_reviews,
)

_O, _S, _R, _C, _B = (
    customer_orders.c,
    customer_segments.c,
    segment_reviews.c,
    customers.c,
    birthday_announcements.c,
)


class SegmentStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def alive(self, customer_id: uuid.UUID) -> bool:
        """Known here and not erased."""
        state = (
            await self.session.execute(sa.select(_C.state).where(_C.id == customer_id))
        ).scalar_one_or_none()
        return state is not None and state != int(d.CustomerState.ERASED)

    async def lock(self, customer_id: uuid.UUID, now: datetime) -> None:
        """The customer's review row, created on first use, locked until the transaction
        ends: the one lock every recompute of her segments takes."""
        await self.session.execute(
            pg.insert(segment_reviews)
            .values(customer_id=customer_id, computed_at=now)
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )
        await self.session.execute(
            sa.select(_R.customer_id).where(_R.customer_id == customer_id).with_for_update()
        )

    async def facts(
        self, customer_id: uuid.UUID, now: datetime
    ) -> tuple[sd.Facts, str, bool] | None:
        """(facts, tier, erased) of a known customer; None for an unknown id."""
        person = (
            await self.session.execute(sa.select(_C.birthday, _C.state).where(_C.id == customer_id))
        ).first()
        if person is None:
            return None
        counted = sa.and_(_O.customer_id == customer_id, ~_O.cancelled)
        orders = (
            await self.session.execute(
                sa.select(
                    sa.func.count().label("n"),
                    sa.func.min(_O.placed_at).label("first"),
                    sa.func.max(_O.placed_at).label("last"),
                ).where(counted)
            )
        ).one()
        since = now - sd.SPEND_WINDOW
        spend = (
            await self.session.execute(
                sa.select(
                    sa.func.coalesce(
                        sa.func.sum(sa.func.greatest(_O.total_yen - _O.returned_yen, 0)), 0
                    ).label("spend"),
                    sa.func.min(_O.placed_at).label("oldest"),
                ).where(counted, _O.placed_at > since)
            )
        ).one()
        channels = (
            await self.session.execute(sa.select(_O.channel).where(counted).distinct())
        ).scalars()
        tier = (
            await self.session.execute(
                sa.select(loyalty_accounts.c.tier).where(
                    loyalty_accounts.c.customer_id == customer_id
                )
            )
        ).scalar_one_or_none()
        facts = sd.Facts(
            order_count=int(orders.n),
            first_order_at=orders.first,
            last_order_at=orders.last,
            twelve_month_spend=int(spend.spend),
            oldest_spend_order_at=spend.oldest,
            channels=frozenset(int(c) for c in channels if c),
            tier_rank=-1,
            birthday=person.birthday,
        )
        return facts, tier or "", person.state == int(d.CustomerState.ERASED)

    async def memberships(self, customer_id: uuid.UUID) -> dict[str, datetime]:
        rows = await self.session.execute(
            sa.select(_S.segment, _S.entered_at).where(_S.customer_id == customer_id)
        )
        return {row.segment: row.entered_at for row in rows}

    async def enter(self, customer_id: uuid.UUID, segments: list[str], now: datetime) -> None:
        if segments:
            await self.session.execute(
                sa.insert(customer_segments),
                [{"customer_id": customer_id, "segment": s, "entered_at": now} for s in segments],
            )

    async def exit(self, customer_id: uuid.UUID, segments: list[str]) -> None:
        if segments:
            await self.session.execute(
                sa.delete(customer_segments).where(
                    _S.customer_id == customer_id, _S.segment.in_(segments)
                )
            )

    async def set_review(
        self, customer_id: uuid.UUID, review_at: datetime | None, now: datetime
    ) -> None:
        await self.session.execute(
            sa.update(segment_reviews)
            .where(_R.customer_id == customer_id)
            .values(review_at=review_at, computed_at=now)
        )

    async def due(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Customers whose review time came, their review rows locked: SKIP LOCKED is the
        sweep's lease (replicas take different customers; one being recomputed by an order
        event is left to that event)."""
        rows = await self.session.execute(
            sa.select(_R.customer_id)
            .where(_R.review_at.is_not(None), _R.review_at <= now)
            .order_by(_R.review_at, _R.customer_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [row.customer_id for row in rows]

    async def unreviewed_with_birthday(self, limit: int) -> list[uuid.UUID]:
        """Customers with a birthday who never had segments computed (no order yet): the
        birthday-month segment needs a review row for them too."""
        rows = await self.session.execute(
            sa.select(_C.id)
            .where(
                _C.birthday.is_not(None),
                _C.state != int(d.CustomerState.ERASED),
                ~sa.exists().where(_R.customer_id == _C.id),
            )
            .order_by(_C.id)
            .limit(limit)
        )
        return [row.id for row in rows]

    async def page(
        self, segment: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, datetime]]:
        query = sa.select(_S.customer_id, _S.entered_at).where(_S.segment == segment)
        if after is not None:
            query = query.where(_S.customer_id > after)
        rows = await self.session.execute(query.order_by(_S.customer_id).limit(limit))
        return [(row.customer_id, row.entered_at) for row in rows]

    async def erase(self, customer_id: uuid.UUID) -> None:
        """Segments are a profile of her: erasure deletes them (birthday announcements
        too: they tell her birthday)."""
        for table in (customer_segments, segment_reviews, birthday_announcements):
            await self.session.execute(sa.delete(table).where(table.c.customer_id == customer_id))

    # -------------------------------------------------------------------------- birthdays

    async def announce_birthdays(
        self, days: list[tuple[int, int]], year: int, now: datetime, limit: int
    ) -> list[uuid.UUID]:
        """Record the announcement of up to ``limit`` customers born on one of ``days`` who
        were not announced this year, in one statement: the primary key (customer, year)
        makes a concurrent replica's same insert wait for this one and then skip it."""
        born = sa.or_(
            *(
                sa.and_(
                    sa.extract("month", _C.birthday) == month,
                    sa.extract("day", _C.birthday) == day,
                )
                for month, day in days
            )
        )
        candidates = (
            sa.select(_C.id, sa.literal(year, sa.SmallInteger), sa.literal(now, _C.updated_at.type))
            .where(
                _C.birthday.is_not(None),
                born,
                _C.state != int(d.CustomerState.ERASED),
                ~sa.exists().where(_B.customer_id == _C.id, _B.year == year),
            )
            .order_by(_C.id)
            .limit(limit)
        )
        rows = await self.session.execute(
            pg.insert(birthday_announcements)
            .from_select(["customer_id", "year", "announced_at"], candidates)
            .on_conflict_do_nothing(index_elements=["customer_id", "year"])
            .returning(_B.customer_id)
        )
        return [row.customer_id for row in rows]
