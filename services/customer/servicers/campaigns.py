"""CampaignService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from grpc.aio import ServicerContext

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import campaigns as cd
from services.customer.usecases.campaigns import Campaigns
from tenpo.customer.v1 import campaign_service_pb2 as api
from tenpo.customer.v1 import campaign_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size
from tenpo.kit.wire import finite, from_timestamp, timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def campaign_message(value: cd.Campaign) -> api.Campaign:
    audience = api.CampaignAudience()
    kind = value.audience.kind
    if kind is cd.AudienceKind.FIRST_TIME:
        audience.first_time = True
    elif kind is cd.AudienceKind.MIN_TIER:
        audience.min_tier = value.audience.min_tier
    elif kind is cd.AudienceKind.LAPSED:
        audience.lapsed_days = value.audience.lapsed_days
    else:
        audience.everyone = True
    return api.Campaign(
        id=str(value.id),
        display_name=value.display_name,
        start_time=timestamp(value.start_at),
        end_time=timestamp(value.end_at),
        audience=audience,
        channels=list(value.channels),  # type: ignore[arg-type]
        points_multiplier=value.multiplier,
        bonus_points=value.bonus_points,
        per_member_limit=value.per_member_limit,
        budget_points=value.budget_points,
        given_points=value.given_points,
        create_time=timestamp(value.created_at),
    )


def campaign_from(message: api.Campaign) -> cd.Campaign:
    if not message.HasField("start_time"):
        raise d.invalid("campaign.start_time", "is required", "FIELD_REQUIRED")
    if not message.HasField("end_time"):
        raise d.invalid("campaign.end_time", "is required", "FIELD_REQUIRED")
    which = message.audience.WhichOneof("audience")
    if which is None:
        raise d.invalid("campaign.audience", "is required", "FIELD_REQUIRED")
    audience = {
        "everyone": cd.Audience(cd.AudienceKind.EVERYONE),
        "first_time": cd.Audience(cd.AudienceKind.FIRST_TIME),
        "min_tier": cd.Audience(
            cd.AudienceKind.MIN_TIER, min_tier=message.audience.min_tier.strip().upper()
        ),
        "lapsed_days": cd.Audience(
            cd.AudienceKind.LAPSED, lapsed_days=message.audience.lapsed_days
        ),
    }[which]
    return cd.Campaign(
        id=uuid.UUID(int=0),
        display_name=message.display_name,
        start_at=from_timestamp(message.start_time, "campaign.start_time"),
        end_at=from_timestamp(message.end_time, "campaign.end_time"),
        audience=audience,
        channels=tuple(int(c) for c in message.channels),
        multiplier=finite(message.points_multiplier, "campaign.points_multiplier"),
        bonus_points=message.bonus_points,
        per_member_limit=message.per_member_limit,
        budget_points=message.budget_points,
        given_points=0,
        created_at=_EPOCH,
    )


class CampaignServicer(api_grpc.CampaignServiceServicer):
    def __init__(self, campaigns: Campaigns, page_tokens: PageTokenCodec) -> None:
        self.campaigns = campaigns
        self.page_tokens = page_tokens

    async def CreateCampaign(
        self, request: api.CreateCampaignRequest, context: ServicerContext
    ) -> api.CreateCampaignResponse:
        created = await self.campaigns.create(
            current_principal(), campaign_from(request.campaign), request.request_id, request
        )
        return api.CreateCampaignResponse(campaign=campaign_message(created))

    async def GetCampaign(
        self, request: api.GetCampaignRequest, context: ServicerContext
    ) -> api.GetCampaignResponse:
        found = await self.campaigns.get(current_principal(), request.campaign_id)
        return api.GetCampaignResponse(campaign=campaign_message(found))

    async def ListCampaigns(
        self, request: api.ListCampaignsRequest, context: ServicerContext
    ) -> api.ListCampaignsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        after = self.page_tokens.decode_keyset(request.page_token, query="campaigns")
        found = await self.campaigns.page(
            current_principal(),
            (after[0], convert.parse_id(after[1], "page_token")) if after else None,
            size + 1,
        )
        page, token = self.page_tokens.keyset_page(
            found, size, lambda c: (c.start_at, c.id), query="campaigns"
        )
        return api.ListCampaignsResponse(
            campaigns=[campaign_message(c) for c in page], next_page_token=token
        )

    async def EndCampaign(
        self, request: api.EndCampaignRequest, context: ServicerContext
    ) -> api.EndCampaignResponse:
        ended = await self.campaigns.end(current_principal(), request.campaign_id)
        return api.EndCampaignResponse(campaign=campaign_message(ended))

    async def ListLapsedCustomerOffers(
        self, request: api.ListLapsedCustomerOffersRequest, context: ServicerContext
    ) -> api.ListLapsedCustomerOffersResponse:
        size = page_size(request.page_size, default=100, maximum=500)
        shape = {"c": request.campaign_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.campaigns.lapsed_offers(
            current_principal(),
            request.campaign_id,
            uuid.UUID(cursor["a"]) if cursor else None,
            size + 1,
        )
        response = api.ListLapsedCustomerOffersResponse(
            offers=[
                api.LapsedCustomerOffer(customer_id=str(c), last_order_time=timestamp(t))
                for c, t in found[:size]
            ]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"a": str(found[size - 1][0])}, query=shape
            )
        return response
