"""Gateway inbound webhooks: carriers report delivery progress.

``POST /v1/webhooks/carrier`` takes the JSON of an order ``UpdateDeliveryStatusRequest``
(``orderId``, ``fulfillmentId``, ``status``, ``requestId``) signed by the carrier:
``x-tenpo-signature: sha256=<hex HMAC-SHA256 of the raw body with the shared secret>``. The
signature is checked over the bytes as received, before anything is parsed, in constant
time; a missing or wrong one is 401 ``SIGNATURE_INVALID`` and nothing is called. A valid
request calls the order service's UpdateDeliveryStatus as a service (the gateway's own
client credentials): the order service decides the rest (unknown fulfilment, bad status), and
a repeated delivery of the same webhook changes nothing (the update is idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import grpc

from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method
from services.gateway.errors import from_rpc_error, http_error
from services.gateway.http import Request, Send, send_json
from services.gateway.transcode import parse_json_body
from tenpo.kit.service_token import TokenSource

CARRIER_PATH = "/v1/webhooks/carrier"
CARRIER_METHOD = "tenpo.order.v1.OrderService.UpdateDeliveryStatus"
SIGNATURE_HEADER = b"x-tenpo-signature"
MAX_BODY = 16 * 1024


def sign(secret: str, body: bytes) -> str:
    """The header value a carrier sends (also what tests and carriers' adapters use)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CarrierWebhook:
    def __init__(
        self, settings: GatewaySettings, backends: Backends, method: Method, tokens: TokenSource
    ) -> None:
        self._secret = settings.carrier_webhook_secret.get_secret_value()
        self._tokens = tokens
        self._timeout = settings.backend_timeout_seconds
        self._backends = backends
        self._method = method

    async def __call__(self, request: Request, send: Send) -> int:
        request.route_label = f"POST {CARRIER_PATH}"
        body = await request.body(MAX_BODY)
        if not self._signed(request, body):
            raise http_error(
                401,
                grpc.StatusCode.UNAUTHENTICATED,
                "the webhook signature is missing or wrong",
                "SIGNATURE_INVALID",
            )
        message = self._method.request_class()()
        parse_json_body(body, message)  # 400 naming the field, like every JSON route
        metadata = [*await self._tokens.metadata(), ("x-request-id", request.request_id)]
        try:
            await self._backends.callable(self._method)(
                message, metadata=metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()  # signed in again at the next call
            raise from_rpc_error(error) from None
        answer: dict[str, Any] = {"accepted": True}
        await send_json(send, 200, answer)
        return 200

    def _signed(self, request: Request, body: bytes) -> bool:
        sent = [v for k, v in request.scope.get("headers", ()) if k == SIGNATURE_HEADER]
        if len(sent) != 1:
            return False
        expected = sign(self._secret, body).encode()
        return hmac.compare_digest(expected, bytes(sent[0]))
