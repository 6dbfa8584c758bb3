"""PromotionService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.cart import convert
from services.cart.usecases.promotions import UPDATABLE, Promotions
from services.cart.usecases.redemptions import Redemptions
from tenpo.cart.v1 import promotion_service_pb2 as api
from tenpo.cart.v1 import promotion_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.pagination import PageTokenCodec, page_size
from tenpo.kit.wire import parse_id, timestamp


class PromotionServicer(api_grpc.PromotionServiceServicer):
    def __init__(
        self, promotions: Promotions, redemptions: Redemptions, page_tokens: PageTokenCodec
    ) -> None:
        self.promotions = promotions
        self.redemptions = redemptions
        self.page_tokens = page_tokens

    async def CreatePromotion(
        self, request: api.CreatePromotionRequest, context: ServicerContext
    ) -> api.CreatePromotionResponse:
        principal = current_principal()
        # Permission before validation: a caller who may not create learns nothing more.
        self.promotions.authorize(principal)
        created = await self.promotions.create(
            principal, convert.promotion_from(request.promotion), request.request_id, request
        )
        return api.CreatePromotionResponse(promotion=convert.promotion_to(created))

    async def GetPromotion(
        self, request: api.GetPromotionRequest, context: ServicerContext
    ) -> api.GetPromotionResponse:
        found = await self.promotions.get(current_principal(), parse_id(request.id, "id"))
        return api.GetPromotionResponse(promotion=convert.promotion_to(found))

    async def ListPromotions(
        self, request: api.ListPromotionsRequest, context: ServicerContext
    ) -> api.ListPromotionsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        cursor = self.page_tokens.decode(request.page_token, query="promotions")
        after: tuple[int, str] | None = None
        if cursor:
            try:
                after = (int(cursor["p"]), str(cursor["i"]))
            except (KeyError, TypeError, ValueError):
                raise InvalidArgument(
                    "invalid page token",
                    reason="INVALID_PAGE_TOKEN",
                    field_violations=[FieldViolation("page_token", "unreadable cursor")],
                ) from None
        found = await self.promotions.page(current_principal(), after, size + 1)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = self.page_tokens.encode(
                {"p": last.priority, "i": str(last.id)}, query="promotions"
            )
        return api.ListPromotionsResponse(
            promotions=[convert.promotion_to(p) for p in found[:size]], next_page_token=token
        )

    async def UpdatePromotion(
        self, request: api.UpdatePromotionRequest, context: ServicerContext
    ) -> api.UpdatePromotionResponse:
        principal = current_principal()
        self.promotions.authorize(principal)
        promotion_id = parse_id(request.promotion.id, "promotion.id")
        paths = update_paths(request.update_mask.paths, request.promotion, UPDATABLE)
        values = convert.promotion_changes(request.promotion, paths)
        updated = await self.promotions.update(
            principal,
            promotion_id,
            paths,
            values,
            request.promotion.etag,
            request.request_id,
            request,
        )
        return api.UpdatePromotionResponse(promotion=convert.promotion_to(updated))

    async def IssuePersonalCode(
        self, request: api.IssuePersonalCodeRequest, context: ServicerContext
    ) -> api.IssuePersonalCodeResponse:
        principal = current_principal()
        self.promotions.authorize(principal)
        issued = await self.promotions.issue_personal_code(
            principal,
            parse_id(request.promotion_id, "promotion_id"),
            request.customer_id,
            (
                convert.to_timedelta(request.valid_for, "valid_for")
                if request.HasField("valid_for")
                else None
            ),
            list(request.skus),
            request.request_id,
            request,
        )
        return api.IssuePersonalCodeResponse(
            code=issued.code, expire_time=timestamp(issued.expires_at)
        )

    async def ReserveRedemptions(
        self, request: api.ReserveRedemptionsRequest, context: ServicerContext
    ) -> api.ReserveRedemptionsResponse:
        principal = current_principal()
        self.redemptions.authorize(principal)
        found = await self.redemptions.reserve(
            principal,
            parse_id(request.cart_id, "cart_id"),
            request.etag,
            request.order_id,
            convert.to_timedelta(request.ttl, "ttl") if request.HasField("ttl") else None,
            request.request_id,
            request,
        )
        return api.ReserveRedemptionsResponse(redemptions=[convert.redemption_to(r) for r in found])

    async def CommitRedemptions(
        self, request: api.CommitRedemptionsRequest, context: ServicerContext
    ) -> api.CommitRedemptionsResponse:
        found = await self.redemptions.commit(current_principal(), request.order_id)
        return api.CommitRedemptionsResponse(redemptions=[convert.redemption_to(r) for r in found])

    async def ReleaseRedemptions(
        self, request: api.ReleaseRedemptionsRequest, context: ServicerContext
    ) -> api.ReleaseRedemptionsResponse:
        found = await self.redemptions.release(current_principal(), request.order_id)
        return api.ReleaseRedemptionsResponse(redemptions=[convert.redemption_to(r) for r in found])

    async def ReturnRedemptions(
        self, request: api.ReturnRedemptionsRequest, context: ServicerContext
    ) -> api.ReturnRedemptionsResponse:
        found = await self.redemptions.return_(
            current_principal(), request.order_id, request.reason, request.request_id, request
        )
        return api.ReturnRedemptionsResponse(redemptions=[convert.redemption_to(r) for r in found])
