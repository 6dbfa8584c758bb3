"""Gateway routes of the notification service that are not JSON: the open pixel (a real 1×1
GIF), the click redirect (302, only to allow-listed hosts) and the providers' delivery
callbacks (HMAC-SHA256 over the raw body, forwarded as the gateway's own service call).

    GET  /v1/t/o/{token}        → TrackOpen,  200 image/gif
    GET  /v1/t/c/{token}        → TrackClick, 302 Location: <the URL recorded at send time>
    POST /v1/deliveryCallbacks  → RecordDeliveryStatus (signature checked first)

The tracking tokens are their own credential (the methods' access rule says so); the
notification service answers only the URL it recorded when the message was sent, and the
gateway follows it only to a host in ``redirect_allowed_hosts`` — no open redirect even if
a recorded link were foreign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import grpc
from google.protobuf import json_format

from services.gateway.access import AccessPolicy, Caller
from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from services.gateway.errors import from_domain_error, from_rpc_error, http_error
from services.gateway.http import GatewayApp, Request, Send, send_bytes, send_json
from services.gateway.transcode import parse_json_body
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.service_token import TokenSource

log = logging.getLogger("tenpo.gateway")

OPEN_PREFIX = "/v1/t/o/"
CLICK_PREFIX = "/v1/t/c/"
CALLBACK_PATH = "/v1/deliveryCallbacks"
TRACK_OPEN = "tenpo.notification.v1.NotificationService.TrackOpen"
TRACK_CLICK = "tenpo.notification.v1.NotificationService.TrackClick"
RECORD_DELIVERY = "tenpo.notification.v1.NotificationService.RecordDeliveryStatus"
SIGNATURE_HEADER = "x-tenpo-signature"
MAX_TOKEN = 512
MAX_CALLBACK_BYTES = 16 * 1024
#: A transparent 1×1 GIF89a (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = (b"cache-control", b"no-store, max-age=0")


#: What the tracking routes answer on success, for the OpenAPI document (they are not JSON).
TRACKING_RESPONSES: dict[str, dict[str, Any]] = {
    TRACK_OPEN: {
        "200": {
            "description": "A transparent 1×1 GIF; the open is recorded once.",
            "headers": {
                "Cache-Control": {"schema": {"type": "string", "const": "no-store, max-age=0"}}
            },
            "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    TRACK_CLICK: {
        "302": {
            "description": "To the URL recorded for this link when the message was sent (only "
            "to a host in the gateway's REDIRECT_ALLOWED_HOSTS, else 403 "
            "REDIRECT_NOT_ALLOWED); the click is recorded once.",
            "headers": {
                "Location": {
                    "required": True,
                    "schema": {"type": "string", "format": "uri"},
                }
            },
        }
    },
}


def signature(secret: bytes, body: bytes) -> str:
    """What a provider (or its relay) sends in ``X-Tenpo-Signature``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


#: Characters a browser drops or reads differently from Python's urlsplit: "\" is "/" to a
#: browser, so "https://evil.example\@shop.example.jp/" goes to evil.example while urlsplit
#: names shop.example.jp its host; controls and spaces are stripped or split on.
_AMBIGUOUS_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")


def host_allowed(url: str, allowed: list[str]) -> bool:
    """``url`` is http(s) to a listed host, or a subdomain of an entry written ".example.jp".
    Only URLs every parser reads alike pass: no backslash, control or space anywhere, no
    user info, an ASCII authority and a valid port."""
    if _AMBIGUOUS_IN_URL.search(url):
        return False
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        return False
    if parts.scheme not in ("https", "http") or not host:
        return False
    if "@" in parts.netloc or not parts.netloc.isascii():
        return False
    for entry in allowed:
        entry = entry.lower()
        if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def location(url: str) -> bytes:
    """The redirect's header value: ASCII, non-ASCII path or query characters
    percent-encoded (a link in a template may be written in Japanese)."""
    return quote(url, safe="".join(chr(c) for c in range(0x21, 0x7F))).encode("ascii")


def _not_found() -> Exception:
    return http_error(404, grpc.StatusCode.NOT_FOUND, "no such route", "ROUTE_NOT_FOUND")


def _bad_token() -> Exception:
    """What the notification service answers a token it did not sign, field included."""
    return from_domain_error(
        InvalidArgument(
            "the tracking token is not valid",
            reason="TRACKING_TOKEN_INVALID",
            field_violations=[FieldViolation("token", "not a token of ours")],
        )
    )


class NotificationRoutes:
    def __init__(
        self,
        settings: GatewaySettings,
        schema: Schema,
        backends: Backends,
        policy: AccessPolicy,
        tokens: TokenSource | None,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.backends = backends
        self.policy = policy
        self.tokens = tokens

    def install(self, app: GatewayApp) -> None:
        """Routes whose method and backend exist; the callback only with its secret set."""
        if self._method(TRACK_OPEN) is not None:
            app.add_prefix("GET", OPEN_PREFIX, self.open_pixel)
        if self._method(TRACK_CLICK) is not None:
            app.add_prefix("GET", CLICK_PREFIX, self.click)
        if self._method(RECORD_DELIVERY) is not None:
            if self.settings.provider_callback_secret.get_secret_value():
                app.add_exact("POST", CALLBACK_PATH, self.delivery_callback)
            else:
                log.info("delivery callbacks off: no provider_callback_secret")

    def _method(self, name: str) -> Method | None:
        method = self.schema.method(name)
        if method is None or not self.backends.configured(method.owner):
            return None
        return method

    async def _caller(self, request: Request, method_name: str) -> Caller:
        caller = await self.policy.identify(request.authorization, request.api_key, request.address)
        request.caller = caller
        method = self.schema.method(method_name)
        if method is not None:
            self.policy.authorize(method, caller)
        self.policy.limit(method_name, caller)
        return caller

    async def _call(
        self, name: str, fields: dict[str, Any], metadata: list[tuple[str, str]]
    ) -> Any:
        method = self._method(name)
        if method is None:
            raise _not_found()
        message = method.request_class()(**fields)
        try:
            return await self.backends.callable(method)(
                message, metadata=metadata, timeout=self.settings.backend_timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    def _token(self, request: Request, prefix: str) -> str:
        """The path's token; a malformed one — empty, with a "/", longer than any token
        we issue — is 400 ``TRACKING_TOKEN_INVALID``, as the notification service answers a
        token it did not sign. The length is judged before decoding (3 bytes at most per
        escaped character), so no unbounded input is decoded."""
        raw = request.raw_path[len(prefix) :]
        if len(raw) > 3 * MAX_TOKEN:
            raise _bad_token()
        token = unquote(raw)
        if not token or "/" in token or len(token) > MAX_TOKEN:
            raise _bad_token()
        return token

    async def open_pixel(self, request: Request, send: Send) -> int:
        request.route_label = "GET /v1/t/o/{token}"
        token = self._token(request, OPEN_PREFIX)
        caller = await self._caller(request, TRACK_OPEN)
        await self._call(TRACK_OPEN, {"token": token}, request.backend_metadata(caller))
        await send_bytes(send, 200, PIXEL, b"image/gif", [NO_STORE])
        return 200

    async def click(self, request: Request, send: Send) -> int:
        request.route_label = "GET /v1/t/c/{token}"
        token = self._token(request, CLICK_PREFIX)
        caller = await self._caller(request, TRACK_CLICK)
        answer = await self._call(TRACK_CLICK, {"token": token}, request.backend_metadata(caller))
        url = str(answer.url)
        if not host_allowed(url, self.settings.redirect_allowed_hosts):
            log.warning("click redirect refused: host not allowed")
            raise http_error(
                403,
                grpc.StatusCode.PERMISSION_DENIED,
                "the link's host is not allowed for redirects",
                "REDIRECT_NOT_ALLOWED",
            )
        await send_bytes(send, 302, b"", b"text/plain", [(b"location", location(url)), NO_STORE])
        return 302

    async def delivery_callback(self, request: Request, send: Send) -> int:
        """A provider's report: the signature over the raw body is checked before anything
        is read from it; a bad or missing one is 401 and nothing is forwarded."""
        request.route_label = f"POST {CALLBACK_PATH}"
        caller = await self.policy.identify([], None, request.address)  # no credentials here
        request.caller = caller
        self.policy.limit("gateway.DeliveryCallback", caller)
        body = await request.body(MAX_CALLBACK_BYTES)
        sent = dict(request.scope.get("headers", [])).get(SIGNATURE_HEADER.encode(), b"")
        secret = self.settings.provider_callback_secret.get_secret_value().encode()
        if not hmac.compare_digest(sent, signature(secret, body).encode()):
            raise http_error(
                401,
                grpc.StatusCode.UNAUTHENTICATED,
                "the callback's signature is missing or wrong",
                "CALLBACK_SIGNATURE_INVALID",
            )
        method = self._method(RECORD_DELIVERY)
        if method is None:
            raise _not_found()
        message = method.request_class()()
        parse_json_body(body, message)  # 400 naming the field, like every JSON route
        assert self.tokens is not None  # install() needs the secret, app.py the tokens
        metadata = [*await self.tokens.metadata(), ("x-request-id", request.request_id)]
        try:
            answer = await self.backends.callable(method)(
                message, metadata=metadata, timeout=self.settings.backend_timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self.tokens.invalidate()
            raise from_rpc_error(error) from None
        await send_json(send, 200, json_format.MessageToDict(answer))
        return 200
