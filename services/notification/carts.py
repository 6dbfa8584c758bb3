"""Outgoing calls to the cart service's CartService: a guest cart's contact e-mail, which
the CartAbandoned event only announces (``has_contact_email``; events carry no personal
data). Asked as this service with its own token (scope ``carts:read``), with a deadline; a
cart service that does not answer is ``Unavailable`` (the event is delivered again later),
a cart that is gone is None."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc as cart_grpc
from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import TokenSource

log = logging.getLogger(__name__)


class GuestContacts(Protocol):
    async def contact_email(self, cart_id: str) -> str | None:
        """The guest cart's contact e-mail; None when the cart or its e-mail is gone."""
        ...


class GrpcCarts:
    def __init__(
        self, channel: grpc.aio.Channel | None, tokens: TokenSource, timeout_seconds: float
    ) -> None:
        self._stub = cart_grpc.CartServiceStub(channel) if channel is not None else None
        self._tokens = tokens
        self._timeout = timeout_seconds

    async def contact_email(self, cart_id: str) -> str | None:
        if self._stub is None:
            raise Unavailable("no cart service is configured", reason="CART_NOT_CONFIGURED")
        try:
            response = await self._stub.GetCart(
                cart_api.GetCartRequest(cart_id=cart_id),
                timeout=self._timeout,
                metadata=await self._tokens.metadata(),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()
            log.warning("GetCart failed", extra={"code": error.code().name})
            raise Unavailable(
                "the cart service did not answer", reason="CART_UNAVAILABLE"
            ) from None
        return response.cart.contact_email or None
