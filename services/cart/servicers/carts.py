"""CartService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.cart import convert
from services.cart.servicers.export import ExportRpcs
from services.cart.usecases.carts import CartChanges, Carts
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import cart_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.wire import parse_id

CART_UPDATABLE = ("fulfillment", "loyalty_points_to_redeem", "contact_email")
LINE_UPDATABLE = ("quantity",)


class CartServicer(ExportRpcs, api_grpc.CartServiceServicer):
    def __init__(self, carts: Carts, rendered_lines: int = 0) -> None:
        self.carts = carts
        #: Fills a response's cart (the messages of unchanged lines are reused, up to this
        #: many lines in all).
        self.render = convert.CartRenderer(rendered_lines).render

    async def CreateCart(
        self, request: api.CreateCartRequest, context: ServicerContext
    ) -> api.CreateCartResponse:
        view, token = await self.carts.create(
            current_principal(), request.contact_email, request.request_id, request
        )
        response = api.CreateCartResponse(cart_token=token)
        self.render(response.cart, view)
        return response

    async def GetActiveCart(
        self, request: api.GetActiveCartRequest, context: ServicerContext
    ) -> api.GetActiveCartResponse:
        view = await self.carts.get_active(current_principal())
        response = api.GetActiveCartResponse()
        self.render(response.cart, view)
        return response

    async def GetCart(
        self, request: api.GetCartRequest, context: ServicerContext
    ) -> api.GetCartResponse:
        view = await self.carts.get(
            current_principal(), parse_id(request.cart_id, "cart_id"), request.cart_token
        )
        response = api.GetCartResponse()
        self.render(response.cart, view)
        return response

    async def AddLineItem(
        self, request: api.AddLineItemRequest, context: ServicerContext
    ) -> api.AddLineItemResponse:
        view = await self.carts.add_line(
            current_principal(),
            parse_id(request.cart_id, "cart_id"),
            request.cart_token,
            request.sku,
            request.quantity,
            request.etag,
            request.request_id,
            request,
        )
        response = api.AddLineItemResponse()
        self.render(response.cart, view)
        return response

    async def UpdateLineItem(
        self, request: api.UpdateLineItemRequest, context: ServicerContext
    ) -> api.UpdateLineItemResponse:
        cart_id = parse_id(request.cart_id, "cart_id")
        line_id = parse_id(request.line_item.id, "line_item.id")
        update_paths(request.update_mask.paths, request.line_item, LINE_UPDATABLE)
        view = await self.carts.update_line(
            current_principal(),
            cart_id,
            request.cart_token,
            line_id,
            request.line_item.quantity,
            request.etag,
            request.request_id,
            request,
        )
        response = api.UpdateLineItemResponse()
        self.render(response.cart, view)
        return response

    async def RemoveLineItem(
        self, request: api.RemoveLineItemRequest, context: ServicerContext
    ) -> api.RemoveLineItemResponse:
        view = await self.carts.remove_line(
            current_principal(),
            parse_id(request.cart_id, "cart_id"),
            request.cart_token,
            parse_id(request.line_item_id, "line_item_id"),
            request.etag,
            request.request_id,
            request,
        )
        response = api.RemoveLineItemResponse()
        self.render(response.cart, view)
        return response

    async def UpdateCart(
        self, request: api.UpdateCartRequest, context: ServicerContext
    ) -> api.UpdateCartResponse:
        cart_id = parse_id(request.cart.id, "cart.id")
        paths = update_paths(request.update_mask.paths, request.cart, CART_UPDATABLE)
        changes = CartChanges(
            paths=paths,
            fulfillment=(
                convert.fulfillment_from(request.cart.fulfillment)
                if "fulfillment" in paths
                else None
            ),
            loyalty_points=request.cart.loyalty_points_to_redeem,
            contact_email=request.cart.contact_email,
        )
        view = await self.carts.update_cart(
            current_principal(),
            cart_id,
            request.cart_token,
            changes,
            request.cart.etag,
            request.request_id,
            request,
        )
        response = api.UpdateCartResponse()
        self.render(response.cart, view)
        return response

    async def ApplyPromotionCode(
        self, request: api.ApplyPromotionCodeRequest, context: ServicerContext
    ) -> api.ApplyPromotionCodeResponse:
        view = await self.carts.apply_code(
            current_principal(),
            parse_id(request.cart_id, "cart_id"),
            request.cart_token,
            request.code,
            request.etag,
            request.request_id,
            request,
        )
        response = api.ApplyPromotionCodeResponse()
        self.render(response.cart, view)
        return response

    async def RemovePromotionCode(
        self, request: api.RemovePromotionCodeRequest, context: ServicerContext
    ) -> api.RemovePromotionCodeResponse:
        view = await self.carts.remove_code(
            current_principal(),
            parse_id(request.cart_id, "cart_id"),
            request.cart_token,
            request.code,
            request.etag,
            request.request_id,
            request,
        )
        response = api.RemovePromotionCodeResponse()
        self.render(response.cart, view)
        return response

    async def MergeCart(
        self, request: api.MergeCartRequest, context: ServicerContext
    ) -> api.MergeCartResponse:
        view = await self.carts.merge(
            current_principal(),
            parse_id(request.guest_cart_id, "guest_cart_id"),
            request.guest_cart_token,
            request.request_id,
            request,
        )
        response = api.MergeCartResponse()
        self.render(response.cart, view)
        return response

    async def CheckoutCart(
        self, request: api.CheckoutCartRequest, context: ServicerContext
    ) -> api.CheckoutCartResponse:
        view = await self.carts.checkout(
            current_principal(),
            parse_id(request.cart_id, "cart_id"),
            request.etag,
            request.order_id,
            request.request_id,
            request,
        )
        response = api.CheckoutCartResponse()
        self.render(response.cart, view)
        return response
