"""The returns-by-mail rpcs of OrderService over gRPC (a mixin of the order servicer):
proto ⇄ use-case translation only."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.order.convert_fulfilments import missing_lines, return_to
from services.order.usecases.mail_returns import AuthorizationView, MailReturns
from tenpo.kit.auth import current_principal
from tenpo.kit.wire import parse_id, timestamp
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb


def authorization_to(view: AuthorizationView) -> pb.ReturnAuthorization:
    value = view.authorization
    message = pb.ReturnAuthorization(
        id=str(value.id),
        number=value.number,
        order_id=str(value.order_id),
        order_number=view.order_number,
        lines=[pb.FulfillmentLine(sku=line.sku, quantity=line.quantity) for line in value.lines],
        ship_to_location_id=value.ship_to,
        status=int(view.status),  # type: ignore[arg-type]
        expire_time=timestamp(value.expires_at),
        reason=value.reason,
        create_time=timestamp(value.created_at),
    )
    if view.order_return is not None:
        message.order_return.CopyFrom(return_to(view.order_return, view.currency))
    return message


class ReturnRpcs:
    mail_returns: MailReturns

    async def RequestReturn(
        self, request: api.RequestReturnRequest, context: ServicerContext
    ) -> api.RequestReturnResponse:
        view = await self.mail_returns.request(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            request.order_token,
            missing_lines(request.lines),
            request.reason,
            request.request_id,
        )
        return api.RequestReturnResponse(return_authorization=authorization_to(view))

    async def ReceiveReturn(
        self, request: api.ReceiveReturnRequest, context: ServicerContext
    ) -> api.ReceiveReturnResponse:
        view = await self.mail_returns.receive(
            current_principal(),
            authorization_id=(
                parse_id(request.return_authorization_id, "return_authorization_id")
                if request.return_authorization_id
                else None
            ),
            number=request.number,
            location_id=request.location_id,
            lines=missing_lines(request.lines),
            request_id=request.request_id,
        )
        return api.ReceiveReturnResponse(return_authorization=authorization_to(view))

    async def ListReturnAuthorizations(
        self, request: api.ListReturnAuthorizationsRequest, context: ServicerContext
    ) -> api.ListReturnAuthorizationsResponse:
        views = await self.mail_returns.list(
            current_principal(), parse_id(request.order_id, "order_id"), request.order_token
        )
        return api.ListReturnAuthorizationsResponse(
            return_authorizations=[authorization_to(v) for v in views]
        )

    async def CancelReturnAuthorization(
        self, request: api.CancelReturnAuthorizationRequest, context: ServicerContext
    ) -> api.CancelReturnAuthorizationResponse:
        view = await self.mail_returns.cancel(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.return_authorization_id, "return_authorization_id"),
            request.order_token,
        )
        return api.CancelReturnAuthorizationResponse(return_authorization=authorization_to(view))
