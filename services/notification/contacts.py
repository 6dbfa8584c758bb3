"""Outgoing calls for a guest's contact e-mail, which events only announce
(``has_contact_email``; events carry no personal data): a guest cart's from the cart service
(``CartAbandoned``, scope ``carts:read``), a guest order's from the order service (the return
events, scope ``orders:read``). Asked as this service with its own token, with a deadline; a
service that does not answer is ``Unavailable`` (the event is delivered again later), an
object that is gone (or whose address was erased) is None."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import grpc

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc as cart_grpc
from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import TokenSource
from tenpo.order.v1 import order_service_pb2 as order_api
from tenpo.order.v1 import order_service_pb2_grpc as order_grpc

log = logging.getLogger(__name__)


class Contacts(Protocol):
    async def contact_email(self, object_id: str) -> str | None:
        """The guest object's contact e-mail; None when it or its e-mail is gone."""
        ...


class _GrpcContacts:
    """One service's ``Get`` of a guest object, read for its ``contact_email``."""

    service = ""  # "cart", "order": names the reasons and the log line

    def __init__(
        self, channel: grpc.aio.Channel | None, tokens: TokenSource, timeout_seconds: float
    ) -> None:
        self._channel = channel
        self._tokens = tokens
        self._timeout = timeout_seconds

    async def _get(self, channel: grpc.aio.Channel, object_id: str, **call: Any) -> str:
        raise NotImplementedError

    async def contact_email(self, object_id: str) -> str | None:
        name = self.service.upper()
        if self._channel is None:
            raise Unavailable(
                f"no {self.service} service is configured", reason=f"{name}_NOT_CONFIGURED"
            )
        try:
            email = await self._get(
                self._channel,
                object_id,
                timeout=self._timeout,
                metadata=await self._tokens.metadata(),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()
            log.warning(
                "contact lookup failed", extra={"service": self.service, "code": error.code().name}
            )
            raise Unavailable(
                f"the {self.service} service did not answer", reason=f"{name}_UNAVAILABLE"
            ) from None
        return email or None


class GrpcCarts(_GrpcContacts):
    service = "cart"

    async def _get(self, channel: grpc.aio.Channel, object_id: str, **call: Any) -> str:
        stub = cart_grpc.CartServiceStub(channel)
        response = await stub.GetCart(cart_api.GetCartRequest(cart_id=object_id), **call)
        return str(response.cart.contact_email)


class GrpcOrders(_GrpcContacts):
    service = "order"

    async def _get(self, channel: grpc.aio.Channel, object_id: str, **call: Any) -> str:
        stub = order_grpc.OrderServiceStub(channel)
        response = await stub.GetOrder(order_api.GetOrderRequest(order_id=object_id), **call)
        return str(response.order.contact_email)
