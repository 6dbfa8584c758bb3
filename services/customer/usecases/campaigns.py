"""Customer use cases: loyalty campaigns (staff define them; orders earn by them; the
lapsed-customer audience for notification)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import campaigns as cd
from services.customer.domain import earning as ed
from services.customer.domain import tiers as tier_rules
from services.customer.store.campaigns import CampaignStore
from services.customer.usecases.common import Context, UseCase
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.idempotency import idempotent

WRITE_SCOPE = "loyalty:write"


class Campaigns(UseCase):
    def __init__(
        self, context: Context, tiers: tier_rules.TierRules, channels: Collection[int]
    ) -> None:
        super().__init__(context)
        self.tiers = tiers
        self.channels = frozenset(channels)

    @staticmethod
    def _reader(principal: Principal) -> None:
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        if not (principal.has_scope(d.READ_SCOPE) or principal.has_scope(WRITE_SCOPE)):
            principal.require_scope(d.READ_SCOPE)

    async def create(
        self, principal: Principal, campaign: cd.Campaign, request_id: str, request: Message
    ) -> cd.Campaign:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(WRITE_SCOPE)
        campaign = replace(campaign, id=uuid.uuid4(), created_at=self.clock(), given_points=0)
        cd.check_campaign(campaign, set(self.tiers.thresholds), self.channels)
        async with self.db.unit_of_work() as uow:
            store = CampaignStore(uow.session)

            async def insert() -> wrappers_pb2.StringValue:
                await store.insert(campaign)
                return wrappers_pb2.StringValue(value=str(campaign.id))

            done = await idempotent(
                uow,
                scope="CreateCampaign",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=insert,
            )
            found = await store.get(uuid.UUID(done.value))
            await uow.commit()
        assert found is not None
        return found

    async def get(self, principal: Principal, campaign_ref: str) -> cd.Campaign:
        self._reader(principal)
        campaign_id = convert.parse_id(campaign_ref, "campaign_id")
        async with self.db.unit_of_work() as uow:
            found = await CampaignStore(uow.session).get(campaign_id)
        if found is None:
            raise cd.campaign_not_found()
        return found

    async def page(
        self, principal: Principal, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[cd.Campaign]:
        self._reader(principal)
        async with self.db.unit_of_work() as uow:
            return await CampaignStore(uow.session).page(after, limit)

    async def end(self, principal: Principal, campaign_ref: str) -> cd.Campaign:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(WRITE_SCOPE)
        campaign_id = convert.parse_id(campaign_ref, "campaign_id")
        async with self.db.unit_of_work() as uow:
            ended = await CampaignStore(uow.session).end(campaign_id, self.clock())
            await uow.commit()
        if ended is None:
            raise cd.campaign_not_found()
        return ended

    async def lapsed_offers(
        self, principal: Principal, campaign_ref: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, datetime]]:
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        principal.require_scope(d.READ_SCOPE)
        campaign = await self.get(principal, campaign_ref)
        now = self.clock()
        if campaign.audience.kind is not cd.AudienceKind.LAPSED or not campaign.runs_at(now):
            raise cd.not_a_running_lapsed_campaign()
        cutoff = now - timedelta(days=campaign.audience.lapsed_days)
        async with self.db.unit_of_work() as uow:
            return await CampaignStore(uow.session).lapsed(cutoff, after, limit)

    # ------------------------------------------------------------------------ earning

    async def bonus(
        self,
        uow: UnitOfWork,
        *,
        order_id: str,
        customer_id: uuid.UUID,
        channel: int,
        placed_at: datetime,
        base_points: int,
        shopper: cd.Shopper,
    ) -> int:
        """Extra points of every campaign the order qualifies for, counted against each
        campaign's member limit and budget. The caller holds the customer's lock, so her
        awards are counted exactly; the budget is one conditional UPDATE per campaign."""
        store = CampaignStore(uow.session)
        total = 0
        for campaign in await store.running(placed_at):
            min_rank = self.tiers.rank(campaign.audience.min_tier)
            if not cd.applies(
                campaign,
                channel=channel,
                placed_at=placed_at,
                shopper=shopper,
                min_tier_rank=min_rank,
            ):
                continue
            extra = campaign.extra_points(base_points)
            if extra <= 0:
                continue
            if campaign.per_member_limit and (
                await store.awards_to(campaign.id, customer_id) >= campaign.per_member_limit
            ):
                continue
            if not await store.spend_budget(campaign.id, extra):
                continue
            await store.award(campaign.id, order_id, customer_id, extra, self.clock())
            total += extra
        return total

    async def give_back(self, uow: UnitOfWork, order: ed.OrderRecord) -> None:
        """Returns and cancellations take back an order's extra points with the rest of
        its points: what they take goes back to each campaign's budget, and an award taken
        back in full no longer counts against the member's limit. The caller holds the
        customer's lock (the order's awards are hers); idempotent, on the running total."""
        store = CampaignStore(uow.session)
        for award in await store.awards_of_order(order.order_id):
            taken = award.points if order.cancelled else ed.returned_share(award.points, order)
            due = award.refund_due(taken)
            if due > 0:
                await store.refund(award, due)
