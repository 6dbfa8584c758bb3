"""OrderService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid

from grpc.aio import ServicerContext

from services.order import convert
from services.order.servicers.export import ExportRpcs
from services.order.servicers.fulfilments import FulfilmentRpcs
from services.order.servicers.returns import ReturnRpcs
from services.order.usecases.checkout import Checkout
from services.order.usecases.fulfilments import Fulfilments
from services.order.usecases.mail_returns import MailReturns
from services.order.usecases.orders import Orders
from services.order.usecases.returns import Returns
from services.order.usecases.search import OrderSearch
from services.order.usecases.waves import PickWaves
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size
from tenpo.kit.wire import parse_id
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import order_service_pb2_grpc as api_grpc


class OrderServicer(FulfilmentRpcs, ReturnRpcs, ExportRpcs, api_grpc.OrderServiceServicer):
    def __init__(
        self,
        checkout: Checkout,
        orders: Orders,
        page_tokens: PageTokenCodec,
        fulfilments: Fulfilments,
        returns: Returns,
        mail_returns: MailReturns,
        search: OrderSearch | None = None,
    ) -> None:
        self.waves = PickWaves(fulfilments)
        self.checkout = checkout
        self.orders = orders
        self.page_tokens = page_tokens
        self.fulfilments = fulfilments
        self.returns = returns
        self.mail_returns = mail_returns
        self.search = search or OrderSearch(checkout.db)

    async def PlaceOrder(
        self, request: api.PlaceOrderRequest, context: ServicerContext
    ) -> api.PlaceOrderResponse:
        principal = current_principal()
        order = await self.checkout.place(
            principal,
            cart_id=request.cart_id,
            cart_etag=request.cart_etag,
            method=convert.payment_method(request.payment.method),
            card_token=request.payment.card_token,
            request_id=request.request_id,
            request=request,
            cart_token=request.cart_token,
            contact_email=request.contact_email,
            contact_phone=request.contact_phone,
        )
        return api.PlaceOrderResponse(
            order=await self.shown(principal, order, guest=order.is_guest),
            order_token=self.orders.token_of(order),
        )

    async def GetOrder(
        self, request: api.GetOrderRequest, context: ServicerContext
    ) -> api.GetOrderResponse:
        principal = current_principal()
        order = await self.orders.get(
            principal, parse_id(request.order_id, "order_id"), request.order_token
        )
        shown = await self.shown(principal, order, guest=bool(request.order_token))
        return api.GetOrderResponse(order=shown)

    async def ListOrders(
        self, request: api.ListOrdersRequest, context: ServicerContext
    ) -> api.ListOrdersResponse:
        principal = current_principal()
        size = page_size(request.page_size, default=20, maximum=100)
        statuses = convert.statuses(list(request.statuses))
        query = {
            "customer": request.customer_id or principal.subject,
            "statuses": sorted(int(s) for s in statuses),
        }
        after = self.page_tokens.decode_keyset(request.page_token, query=query)
        position = (after[0], uuid.UUID(after[1])) if after else None
        fetched = await self.orders.list(
            principal,
            customer_id=request.customer_id,
            statuses=statuses,
            after=position,
            limit=size + 1,
        )
        page, token = self.page_tokens.keyset_page(
            fetched, size, lambda o: (o.created_at, o.id), query=query
        )
        return api.ListOrdersResponse(
            orders=await self.all_shown(principal, page), next_page_token=token
        )

    async def CancelOrder(
        self, request: api.CancelOrderRequest, context: ServicerContext
    ) -> api.CancelOrderResponse:
        principal = current_principal()
        order = await self.orders.cancel(
            principal, parse_id(request.order_id, "order_id"), request.reason
        )
        return api.CancelOrderResponse(order=await self.shown(principal, order))

    async def RecordKonbiniPayment(
        self, request: api.RecordKonbiniPaymentRequest, context: ServicerContext
    ) -> api.RecordKonbiniPaymentResponse:
        principal = current_principal()
        order = await self.checkout.record_konbini_payment(principal, request.payment_number)
        return api.RecordKonbiniPaymentResponse(order=await self.shown(principal, order))

    async def SearchOrders(
        self, request: api.SearchOrdersRequest, context: ServicerContext
    ) -> api.SearchOrdersResponse:
        size = page_size(request.page_size, default=20, maximum=100)
        query = {"n": request.order_number, "e": request.email, "p": request.phone}
        after = self.page_tokens.decode_keyset(request.page_token, query=query)
        position = (after[0], uuid.UUID(after[1])) if after else None
        principal = current_principal()
        fetched = await self.search.search(
            principal,
            order_number=request.order_number,
            email=request.email,
            phone=request.phone,
            after=position,
            limit=size + 1,
        )
        page, token = self.page_tokens.keyset_page(
            fetched, size, lambda o: (o.created_at, o.id), query=query
        )
        return api.SearchOrdersResponse(
            orders=await self.all_shown(principal, page), next_page_token=token
        )
