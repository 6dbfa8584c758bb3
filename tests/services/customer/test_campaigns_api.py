"""CampaignService against real PostgreSQL: staff define campaigns, orders earn by them
(audience, channels, multiplier and bonus), member limits and budgets hold under
concurrency, and the lapsed-customer audience pages for notification."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from services.customer.domain import earning as ed
from services.customer.usecases.bundle import CustomerUseCases
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import campaign_service_pb2 as api
from tenpo.customer.v1 import campaign_service_pb2_grpc as api_grpc
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as loyalty_grpc
from tests.services.customer.conftest import Service, bearer, expect_error


def ts(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@dataclass
class Desk:
    service: Service
    stub: api_grpc.CampaignServiceStub
    loyalty: loyalty_grpc.LoyaltyServiceStub
    staff: tuple[tuple[str, str], ...]
    notifier: tuple[tuple[str, str], ...]

    @property
    def cases(self) -> CustomerUseCases:
        return self.service.host.runtime.parts["use_cases"]  # type: ignore[no-any-return]

    async def create(self, **fields: Any) -> api.Campaign:
        now = datetime.now(UTC)
        fields.setdefault("display_name", "autumn")
        fields.setdefault("start_time", ts(now - timedelta(hours=1)))
        fields.setdefault("end_time", ts(now + timedelta(days=7)))
        fields.setdefault("audience", api.CampaignAudience(everyone=True))
        response = await self.stub.CreateCampaign(
            api.CreateCampaignRequest(campaign=api.Campaign(**fields)), metadata=self.staff
        )
        return response.campaign

    async def order(
        self,
        customer_id: str,
        yen: int,
        *,
        channel: int = common_pb2.CHANNEL_WEB,
        days_ago: float = 0,
        order_id: str | None = None,
    ) -> str:
        order_id = order_id or f"o-{uuid.uuid4().hex[:10]}"
        async with self.service.host.runtime.db.unit_of_work() as uow:
            await self.cases.earning.order_placed(
                uow,
                ed.OrderFacts(
                    order_id=order_id,
                    order_number="N",
                    customer_id=uuid.UUID(customer_id),
                    channel=channel,
                    store_id=None,
                    total_yen=yen,
                    units=1,
                    placed_at=datetime.now(UTC) - timedelta(days=days_ago),
                ),
            )
            await uow.commit()
        return order_id

    async def returned(self, customer_id: str, order_id: str, yen: int) -> None:
        """A return refunding ``yen`` of the order, as the order events' consumer runs it."""
        async with self.service.host.runtime.db.unit_of_work() as uow:
            await self.cases.earning.return_received(
                uow,
                ed.ReturnFacts(
                    return_id=f"r-{uuid.uuid4().hex[:10]}",
                    order_id=order_id,
                    customer_id=uuid.UUID(customer_id),
                    refund_yen=yen,
                    units=0,
                    received_at=datetime.now(UTC),
                ),
            )
            await uow.commit()

    async def cancelled(self, order_id: str) -> None:
        async with self.service.host.runtime.db.unit_of_work() as uow:
            await self.cases.earning.order_cancelled(uow, order_id)
            await uow.commit()

    async def awards(self, campaign_id: str) -> dict[str, tuple[int, int]]:
        """Order id → (points awarded, points given back), as the database holds them."""
        async with self.service.db.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT order_id, points, refunded_points FROM campaign_awards"
                    " WHERE campaign_id = :c"
                ),
                {"c": uuid.UUID(campaign_id)},
            )
            return {row.order_id: (row.points, row.refunded_points) for row in rows}

    async def earned(self, customer_id: str) -> int:
        """Pending and available points: the sweep may make an old order's points available
        meanwhile."""
        response = await self.loyalty.GetBalance(
            loyalty_api.GetBalanceRequest(customer_id=customer_id), metadata=self.notifier
        )
        return response.balance.pending + response.balance.balance

    async def campaign(self, campaign_id: str) -> api.Campaign:
        response = await self.stub.GetCampaign(
            api.GetCampaignRequest(campaign_id=campaign_id), metadata=self.notifier
        )
        return response.campaign


@pytest_asyncio.fixture(scope="module")
async def desk(service: Service) -> AsyncIterator[Desk]:
    staff = bearer(
        service.tokens.mint(
            subject="staff-camp", kind="staff", scopes=["loyalty:write"], channel="BACK_OFFICE"
        )
    )
    notifier = bearer(
        service.tokens.mint(subject="notification", kind="service", scopes=["customers:read"])
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        yield Desk(
            service,
            api_grpc.CampaignServiceStub(channel),
            loyalty_grpc.LoyaltyServiceStub(channel),
            staff,
            notifier,
        )


async def test_bad_campaigns_are_refused_with_every_field_and_nothing_is_created(
    desk: Desk,
) -> None:
    before = await desk.stub.ListCampaigns(api.ListCampaignsRequest(), metadata=desk.staff)
    now = datetime.now(UTC)
    details = await expect_error(
        desk.create(
            display_name="",
            start_time=ts(now),
            end_time=ts(now - timedelta(days=1)),
            audience=api.CampaignAudience(min_tier="PLATINUM"),
            points_multiplier=50,
            bonus_points=-1,
            budget_points=-5,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CAMPAIGN",
    )
    fields = {v.field for v in details.field_violations}
    assert {
        "campaign.display_name",
        "campaign.end_time",
        "campaign.audience.min_tier",
        "campaign.points_multiplier",
        "campaign.bonus_points",
        "campaign.budget_points",
    } <= fields
    details = await expect_error(
        desk.stub.CreateCampaign(
            api.CreateCampaignRequest(campaign=api.Campaign(display_name="x")),
            metadata=desk.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_REQUIRED",
    )
    assert details.field_violations[0].field == "campaign.start_time"
    await expect_error(
        desk.create(audience=api.CampaignAudience(lapsed_days=0), bonus_points=5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CAMPAIGN",
    )
    # Only staff define campaigns; a service reading them may not.
    await expect_error(
        desk.stub.CreateCampaign(
            api.CreateCampaignRequest(campaign=api.Campaign(display_name="x")),
            metadata=desk.notifier,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    after = await desk.stub.ListCampaigns(api.ListCampaignsRequest(), metadata=desk.staff)
    assert len(after.campaigns) == len(before.campaigns)


async def test_a_retried_create_answers_the_first_campaign(desk: Desk) -> None:
    now = datetime.now(UTC)
    request = api.CreateCampaignRequest(
        campaign=api.Campaign(
            display_name="retry",
            start_time=ts(now + timedelta(days=30)),
            end_time=ts(now + timedelta(days=31)),
            audience=api.CampaignAudience(everyone=True),
            bonus_points=1,
        ),
        request_id=uuid.uuid4().hex,
    )
    first = await desk.stub.CreateCampaign(request, metadata=desk.staff)
    again = await desk.stub.CreateCampaign(request, metadata=desk.staff)
    assert first.campaign.id == again.campaign.id
    ended = await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=first.campaign.id), metadata=desk.staff
    )
    assert ended.campaign.end_time.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    await expect_error(
        desk.stub.GetCampaign(
            api.GetCampaignRequest(campaign_id=str(uuid.uuid4())), metadata=desk.staff
        ),
        grpc.StatusCode.NOT_FOUND,
        "CAMPAIGN_NOT_FOUND",
    )


async def test_a_first_time_campaign_on_one_channel_multiplies_the_first_order_only(
    desk: Desk,
) -> None:
    campaign = await desk.create(
        display_name="welcome app",
        audience=api.CampaignAudience(first_time=True),
        channels=[common_pb2.CHANNEL_APP],
        points_multiplier=3,
        bonus_points=7,
    )
    newcomer, _, _ = await desk.service.register("first")
    await desk.order(newcomer, 1_000, channel=common_pb2.CHANNEL_APP)  # 10 x3 + 7
    assert await desk.earned(newcomer) == 37
    await desk.order(newcomer, 1_000, channel=common_pb2.CHANNEL_APP)  # not her first
    assert await desk.earned(newcomer) == 47
    web, _, _ = await desk.service.register("first-web")
    await desk.order(web, 1_000, channel=common_pb2.CHANNEL_WEB)  # another channel
    assert await desk.earned(web) == 10
    assert (await desk.campaign(campaign.id)).given_points == 27
    await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=campaign.id), metadata=desk.staff
    )


async def test_a_budget_is_never_exceeded_by_concurrent_orders(desk: Desk) -> None:
    campaign = await desk.create(
        display_name="budget",
        channels=[common_pb2.CHANNEL_KIOSK],
        bonus_points=10,
        budget_points=50,
    )
    customers = [(await desk.service.register("budget"))[0] for _ in range(12)]
    await asyncio.gather(*(desk.order(c, 100, channel=common_pb2.CHANNEL_KIOSK) for c in customers))
    pendings = [await desk.earned(c) for c in customers]
    assert sorted(pendings) == [1] * 7 + [11] * 5
    assert (await desk.campaign(campaign.id)).given_points == 50
    await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=campaign.id), metadata=desk.staff
    )


async def test_a_member_limit_holds_under_concurrent_orders(desk: Desk) -> None:
    campaign = await desk.create(
        display_name="limit",
        channels=[common_pb2.CHANNEL_CALL_CENTER],
        bonus_points=5,
        per_member_limit=2,
    )
    customer_id, _, _ = await desk.service.register("limit")
    await asyncio.gather(
        *(desk.order(customer_id, 100, channel=common_pb2.CHANNEL_CALL_CENTER) for _ in range(8))
    )
    assert await desk.earned(customer_id) == 8 * 1 + 2 * 5
    assert (await desk.campaign(campaign.id)).given_points == 10
    await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=campaign.id), metadata=desk.staff
    )


async def test_lapsed_customers_are_listed_for_notification_and_earn_the_offer(
    desk: Desk,
) -> None:
    campaign = await desk.create(
        display_name="we miss you",
        audience=api.CampaignAudience(lapsed_days=30),
        channels=[common_pb2.CHANNEL_SMART_MIRROR],
        bonus_points=100,
    )
    lapsed = [(await desk.service.register("lapsed"))[0] for _ in range(3)]
    for customer_id in lapsed:
        await desk.order(customer_id, 1_000, channel=common_pb2.CHANNEL_WEB, days_ago=45)
    recent, _, _ = await desk.service.register("recent")
    await desk.order(recent, 1_000, days_ago=45)
    await desk.order(recent, 1_000, days_ago=3)
    never, _, _ = await desk.service.register("never")
    seen: list[str] = []
    token = ""
    while True:
        page = await desk.stub.ListLapsedCustomerOffers(
            api.ListLapsedCustomerOffersRequest(
                campaign_id=campaign.id, page_size=2, page_token=token
            ),
            metadata=desk.notifier,
        )
        seen += [offer.customer_id for offer in page.offers]
        token = page.next_page_token
        if not token:
            break
    assert set(lapsed) <= set(seen)
    assert recent not in seen and never not in seen
    assert seen == sorted(seen)
    await desk.order(lapsed[0], 1_000, channel=common_pb2.CHANNEL_SMART_MIRROR)
    assert await desk.earned(lapsed[0]) == 10 + 10 + 100
    await desk.order(recent, 1_000, channel=common_pb2.CHANNEL_SMART_MIRROR)
    assert await desk.earned(recent) == 30
    # Only a running lapsed campaign has such an audience.
    other = await desk.create(display_name="not lapsed", bonus_points=1)
    await expect_error(
        desk.stub.ListLapsedCustomerOffers(
            api.ListLapsedCustomerOffersRequest(campaign_id=other.id), metadata=desk.notifier
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAMPAIGN_NOT_LAPSED_OR_NOT_RUNNING",
    )
    for done in (campaign, other):
        await desk.stub.EndCampaign(
            api.EndCampaignRequest(campaign_id=done.id), metadata=desk.staff
        )


async def test_returns_and_cancellations_give_the_budget_and_the_use_back(desk: Desk) -> None:
    pos = common_pb2.CHANNEL_POS
    campaign = await desk.create(
        display_name="refunds",
        channels=[pos],
        bonus_points=100,
        per_member_limit=1,
        budget_points=300,
    )
    given = desk.campaign
    a, b, c, late = [(await desk.service.register("refund"))[0] for _ in range(4)]
    a1 = await desk.order(a, 1_000, channel=pos)
    b1 = await desk.order(b, 1_000, channel=pos)
    await desk.order(c, 1_000, channel=pos)
    await desk.order(late, 1_000, channel=pos)
    assert (await given(campaign.id)).given_points == 300
    assert await desk.earned(late) == 10  # the budget was spent: the rules' points only

    # A cancelled order gives its bonus and its use back: she may earn it again.
    await desk.cancelled(a1)
    assert (await given(campaign.id)).given_points == 200
    await desk.order(a, 1_000, channel=pos)
    assert (await given(campaign.id)).given_points == 300
    assert await desk.earned(a) == 10 + 100

    # Half returned: half the bonus goes back to the budget, the use still counts.
    await desk.returned(b, b1, 500)
    assert (await given(campaign.id)).given_points == 250
    assert (await desk.awards(campaign.id))[b1] == (100, 50)
    await desk.order(b, 1_000, channel=pos)
    assert (await given(campaign.id)).given_points == 250  # limit 1: no second award
    # The rest returned: the whole bonus is back, and so is her use.
    await desk.returned(b, b1, 500)
    await desk.returned(b, b1, 500)  # more than the order: nothing more comes back
    assert (await desk.awards(campaign.id))[b1] == (100, 100)
    assert (await given(campaign.id)).given_points == 200
    await desk.order(b, 1_000, channel=pos)
    assert (await given(campaign.id)).given_points == 300
    # Cancelling a wholly returned order gives nothing back twice.
    await desk.cancelled(b1)
    assert (await given(campaign.id)).given_points == 300
    await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=campaign.id), metadata=desk.staff
    )


async def test_concurrent_returns_and_orders_keep_the_budget_exact(desk: Desk) -> None:
    shelf = common_pb2.CHANNEL_SMART_SHELF
    campaign = await desk.create(
        display_name="refund race",
        channels=[shelf],
        bonus_points=10,
        per_member_limit=1,
        budget_points=80,
    )
    first = [(await desk.service.register("race"))[0] for _ in range(8)]
    orders = await asyncio.gather(*(desk.order(c, 1_000, channel=shelf) for c in first))
    assert (await desk.campaign(campaign.id)).given_points == 80

    # Ten partial returns of each first order (a tenth each), all at once, while four other
    # customers order and compete for whatever budget the returns give back.
    others = [(await desk.service.register("race"))[0] for _ in range(4)]
    await asyncio.gather(
        *(desk.returned(c, o, 100) for c, o in zip(first, orders, strict=True) for _ in range(10)),
        *(desk.order(c, 1_000, channel=shelf) for c in others),
    )
    awards = await desk.awards(campaign.id)
    for order_id in orders:
        assert awards[order_id] == (10, 10)  # every return counted once, the whole bonus back
    outstanding = sum(points - back for points, back in awards.values())
    given_now = (await desk.campaign(campaign.id)).given_points
    assert given_now == outstanding <= 80  # the budget row adds up exactly, never over
    late = [o for o in awards if o not in orders]
    assert given_now == 10 * len(late)
    # Every first customer's use came back with her wholly returned order (limit 1): as
    # many of them as the budget has room for earn the bonus again, at once.
    before = {c: await desk.earned(c) for c in first}
    await asyncio.gather(*(desk.order(c, 1_000, channel=shelf) for c in first))
    bonuses = [await desk.earned(c) - before[c] - 10 for c in first]
    assert sorted(bonuses) == [0] * len(late) + [10] * (8 - len(late))
    assert (await desk.campaign(campaign.id)).given_points == 80
    await desk.stub.EndCampaign(
        api.EndCampaignRequest(campaign_id=campaign.id), metadata=desk.staff
    )
