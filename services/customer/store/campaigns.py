"""Campaign persistence: campaigns, their budget, what they awarded, lapsed audiences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.domain import campaigns as cd
from services.customer.models import campaign_awards, campaigns, customer_orders, customers

_C, _W, _O = campaigns.c, campaign_awards.c, customer_orders.c


def _campaign(row: Any) -> cd.Campaign:
    return cd.Campaign(
        id=row.id,
        display_name=row.display_name,
        start_at=row.start_at,
        end_at=row.end_at,
        audience=cd.Audience(cd.AudienceKind(row.audience), row.min_tier, row.lapsed_days),
        channels=tuple(row.channels),
        multiplier=row.multiplier,
        bonus_points=row.bonus_points,
        per_member_limit=row.per_member_limit,
        budget_points=row.budget_points,
        given_points=row.given_points,
        created_at=row.created_at,
    )


class CampaignStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, campaign: cd.Campaign) -> None:
        await self.session.execute(
            sa.insert(campaigns).values(
                id=campaign.id,
                display_name=campaign.display_name,
                start_at=campaign.start_at,
                end_at=campaign.end_at,
                audience=int(campaign.audience.kind),
                min_tier=campaign.audience.min_tier,
                lapsed_days=campaign.audience.lapsed_days,
                channels=list(campaign.channels),
                multiplier=campaign.multiplier or 1.0,
                bonus_points=campaign.bonus_points,
                per_member_limit=campaign.per_member_limit,
                budget_points=campaign.budget_points,
                created_at=campaign.created_at,
            )
        )

    async def get(self, campaign_id: uuid.UUID) -> cd.Campaign | None:
        row = (await self.session.execute(sa.select(campaigns).where(_C.id == campaign_id))).first()
        return _campaign(row) if row else None

    async def page(self, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[cd.Campaign]:
        query = sa.select(campaigns)
        if after is not None:
            query = query.where(sa.tuple_(_C.start_at, _C.id) < sa.tuple_(*after))
        rows = await self.session.execute(
            query.order_by(_C.start_at.desc(), _C.id.desc()).limit(limit)
        )
        return [_campaign(row) for row in rows]

    async def end(self, campaign_id: uuid.UUID, now: datetime) -> cd.Campaign | None:
        row = (
            await self.session.execute(
                sa.update(campaigns)
                .where(_C.id == campaign_id)
                .values(
                    end_at=sa.func.least(_C.end_at, now), start_at=sa.func.least(_C.start_at, now)
                )
                .returning(*campaigns.c)
            )
        ).first()
        return _campaign(row) if row else None

    async def running(self, moment: datetime) -> list[cd.Campaign]:
        """Campaigns running at ``moment``, by id (the order their rows are locked in)."""
        rows = await self.session.execute(
            sa.select(campaigns).where(_C.start_at <= moment, _C.end_at > moment).order_by(_C.id)
        )
        return [_campaign(row) for row in rows]

    async def awards_to(self, campaign_id: uuid.UUID, customer_id: uuid.UUID) -> int:
        """The member's uses of a campaign: awards not given back in full."""
        return (
            await self.session.execute(
                sa.select(sa.func.count()).where(
                    _W.campaign_id == campaign_id,
                    _W.customer_id == customer_id,
                    _W.refunded_points < _W.points,
                )
            )
        ).scalar_one()

    async def awards_of_order(self, order_id: str) -> list[cd.Award]:
        """By campaign id: the order in which their campaign rows are locked, as ``bonus``
        locks them, so concurrent earnings and refunds never deadlock."""
        rows = await self.session.execute(
            sa.select(campaign_awards)
            .where(_W.order_id == order_id)
            .order_by(_W.campaign_id)
            .with_for_update()
        )
        return [
            cd.Award(
                row.campaign_id, row.order_id, row.customer_id, row.points, row.refunded_points
            )
            for row in rows
        ]

    async def refund(self, award: cd.Award, points: int) -> None:
        """Give ``points`` of an award back to its campaign's budget: two relative updates
        (a CHECK holds the award's refunds within it), so concurrent refunds and earnings of
        one campaign add up exactly on its row."""
        await self.session.execute(
            sa.update(campaign_awards)
            .where(_W.campaign_id == award.campaign_id, _W.order_id == award.order_id)
            .values(refunded_points=_W.refunded_points + points)
        )
        await self.session.execute(
            sa.update(campaigns)
            .where(_C.id == award.campaign_id)
            .values(given_points=_C.given_points - points)
        )

    async def spend_budget(self, campaign_id: uuid.UUID, points: int) -> bool:
        """Count ``points`` as given if the budget allows, in one statement: concurrent
        earnings queue on the row and re-check, so together they never exceed it."""
        row = (
            await self.session.execute(
                sa.update(campaigns)
                .where(
                    _C.id == campaign_id,
                    sa.or_(_C.budget_points == 0, _C.given_points + points <= _C.budget_points),
                )
                .values(given_points=_C.given_points + points)
                .returning(_C.id)
            )
        ).first()
        return row is not None

    async def award(
        self,
        campaign_id: uuid.UUID,
        order_id: str,
        customer_id: uuid.UUID,
        points: int,
        now: datetime,
    ) -> None:
        await self.session.execute(
            sa.insert(campaign_awards).values(
                campaign_id=campaign_id,
                order_id=order_id,
                customer_id=customer_id,
                points=points,
                awarded_at=now,
            )
        )

    async def lapsed(
        self, cutoff: datetime, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, datetime]]:
        """Customers (not erased) whose last order was placed at or before ``cutoff``."""
        last = sa.func.max(_O.placed_at)
        query = (
            sa.select(_O.customer_id, last.label("last_order"))
            .join(customers, customers.c.id == _O.customer_id)
            .where(customers.c.state == int(d.CustomerState.ACTIVE), ~_O.cancelled)
            .group_by(_O.customer_id)
            .having(last <= cutoff)
        )
        if after is not None:
            query = query.where(_O.customer_id > after)
        rows = await self.session.execute(query.order_by(_O.customer_id).limit(limit))
        return [(row.customer_id, row.last_order) for row in rows]
