"""Outgoing calls to the order service's OrderService: a guest order's contact e-mail, which
the return events only announce (``has_contact_email``; events carry no personal data).
Asked as this service with its own token (scope ``orders:read``), with a deadline; an order
service that does not answer is ``Unavailable`` (the event is delivered again later), an
order that is gone (or whose address was erased) is None."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import TokenSource
from tenpo.order.v1 import order_service_pb2 as order_api
from tenpo.order.v1 import order_service_pb2_grpc as order_grpc

log = logging.getLogger(__name__)


class OrderContacts(Protocol):
    async def contact_email(self, order_id: str) -> str | None:
        """The order's contact e-mail; None when the order or its e-mail is gone."""
        ...


class GrpcOrders:
    def __init__(
        self, channel: grpc.aio.Channel | None, tokens: TokenSource, timeout_seconds: float
    ) -> None:
        self._stub = order_grpc.OrderServiceStub(channel) if channel is not None else None
        self._tokens = tokens
        self._timeout = timeout_seconds

    async def contact_email(self, order_id: str) -> str | None:
        if self._stub is None:
            raise Unavailable("no order service is configured", reason="ORDER_NOT_CONFIGURED")
        try:
            response = await self._stub.GetOrder(
                order_api.GetOrderRequest(order_id=order_id),
                timeout=self._timeout,
                metadata=await self._tokens.metadata(),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()
            log.warning("GetOrder failed", extra={"code": error.code().name})
            raise Unavailable(
                "the order service did not answer", reason="ORDER_UNAVAILABLE"
            ) from None
        return response.order.contact_email or None
