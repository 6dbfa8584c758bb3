"""Gateway HTTP layer: the ASGI application in front of the transcoded routes.

Written against raw ASGI rather than a framework's request objects: the gateway's budget is
well under a millisecond per request and most of it belongs to protobuf and gRPC. Per
request: request id and trace context, CORS, routing, authentication, authorization, rate
limits, body limit, transcoding, the backend call with a deadline, the access log.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, quote

import grpc
from opentelemetry import propagate, trace

from services.gateway.access import (
    API_KEY_HEADER,
    AccessPolicy,
    Caller,
    channel_name,
    principal_label,
)
from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.errors import HttpError, from_domain_error, from_rpc_error, http_error
from services.gateway.routes import Route, Router
from services.gateway.transcode import build_request, render, to_json
from tenpo.kit.cache import LRUCache, bounded_cache
from tenpo.kit.errors import DomainError
from tenpo.kit.metrics import HttpMetrics

log = logging.getLogger("tenpo.gateway.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
MAX_QUERY_FIELDS = 200
#: Headers passed on to the backends as gRPC metadata (besides authorization and channel).
FORWARDED_HEADERS = frozenset({"accept-language", "traceparent", "tracestate"})
CORS_ALLOW_HEADERS = (
    b"authorization, content-type, x-api-key, x-request-id, traceparent, tracestate, "
    b"accept-language, last-event-id"
)
CORS_EXPOSE_HEADERS = b"retry-after, x-request-id"
CORS_METHODS = b"GET, POST, PUT, PATCH, DELETE"
_TRACE_HEADERS = ("traceparent", "tracestate")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Request:
    """What the handlers need of an HTTP request, read from the ASGI scope once."""

    scope: Scope
    receive: Receive
    verb: str
    raw_path: str
    request_id: str
    address: str
    authorization: list[str] = field(default_factory=list)
    api_key: str | None = None
    origin: str | None = None
    content_length: int | None = None
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    last_event_id: str | None = None
    #: Set once the caller is known, for the access log.
    caller: Caller | None = None
    route_label: str = ""

    def query(self) -> list[tuple[str, str]]:
        raw: bytes = self.scope.get("query_string", b"")
        if not raw:
            return []
        try:
            return parse_qsl(
                raw.decode("utf-8", "replace"),
                keep_blank_values=False,
                max_num_fields=MAX_QUERY_FIELDS,
            )
        except ValueError:
            raise http_error(
                400, grpc.StatusCode.INVALID_ARGUMENT, "too many query parameters", "QUERY_INVALID"
            ) from None

    async def body(self, limit: int) -> bytes:
        if self.content_length is not None and self.content_length > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def backend_metadata(self, caller: Caller) -> list[tuple[str, str]]:
        return [*caller.backend_metadata(), ("x-request-id", self.request_id), *self.forwarded]


class RenderCache:
    """JSON bodies by the exact backend response bytes (and route): turning a message into
    JSON costs more CPU than the whole rest of a proxied read, and hot reads return the same
    bytes again and again. The output is a pure function of the bytes the caller's own call
    returned, so nothing can leak between callers and nothing goes stale: the kit's bounded
    cache, by total size (response and JSON bytes), least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        # value: (bytes held, JSON); one entry may take at most an eighth of the budget.
        self._entries: LRUCache[tuple[str, str, bytes], tuple[int, bytes]] = bounded_cache(
            max(1, max_bytes), getsizeof=itemgetter(0)
        )

    def get(self, route: Route, raw: bytes) -> bytes:
        key = (route.method.path, route.binding.response_body, raw)
        entry = self._entries.get(key)
        if entry is not None:
            return entry[1]
        payload = render(route, route.method.response_class().FromString(raw))
        size = len(raw) + len(payload)
        if self._max_bytes and size * 8 <= self._max_bytes:
            self._entries[key] = (size, payload)
        return payload

    @property
    def bytes_held(self) -> int:
        return int(self._entries.currsize)


class ClientDisconnected(Exception):
    pass


def _too_large(limit: int) -> HttpError:
    return http_error(
        413,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body exceeds {limit} bytes",
        "BODY_TOO_LARGE",
        {"max_bytes": str(limit)},
    )


Handler = Callable[[Request, Send], Awaitable[int]]


class GatewayApp:
    """The ASGI application. Extra handlers (documents, composed views, streams) are plain
    ``async (request, send) -> status`` functions registered by exact path or prefix."""

    def __init__(
        self,
        settings: GatewaySettings,
        router: Router,
        backends: Backends,
        policy: AccessPolicy,
    ) -> None:
        self.settings = settings
        self.router = router
        self.backends = backends
        self.policy = policy
        self.exact: dict[tuple[str, str], Handler] = {}
        self.prefixed: list[tuple[str, str, Handler]] = []
        self.rendered = RenderCache(settings.render_cache_bytes)
        self.requests_served = 0
        self.status_counts: dict[int, int] = {}
        self._origins = frozenset(settings.cors_allowed_origins)
        self._any_origin = "*" in self._origins
        self._timeout = settings.backend_timeout_seconds
        self._hops = settings.forwarded_for_hops
        tracing = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)
        self._tracer = trace.get_tracer("tenpo.gateway") if tracing else None
        #: Duration per route and status; set when telemetry is on (tests set their own).
        self.metrics: HttpMetrics | None = HttpMetrics() if tracing else None

    # --- registration --------------------------------------------------------------------

    def add_exact(self, verb: str, path: str, handler: Handler) -> None:
        self.exact[(verb, path)] = handler

    def add_prefix(self, verb: str, prefix: str, handler: Handler) -> None:
        self.prefixed.append((verb, prefix, handler))

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    def _request(self, scope: Scope, receive: Receive) -> Request:
        raw_path_bytes = scope.get("raw_path")
        raw_path = (
            raw_path_bytes.decode("latin-1") if raw_path_bytes else quote(scope.get("path", "/"))
        )
        request_id = ""
        authorization: list[str] = []
        api_key = origin = last_event_id = None
        content_length: int | None = None
        forwarded: list[tuple[str, str]] = []
        forwarded_for = ""
        for key_bytes, value_bytes in scope["headers"]:
            key = key_bytes.decode("latin-1")
            if key == "authorization":
                authorization.append(value_bytes.decode("latin-1"))
            elif key in FORWARDED_HEADERS:
                value = value_bytes.decode("latin-1")
                if key != "traceparent" or _TRACEPARENT.match(value):
                    forwarded.append((key, value))
            elif key == API_KEY_HEADER:
                api_key = value_bytes.decode("latin-1")
            elif key == "x-request-id":
                candidate = value_bytes.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
            elif key == "origin":
                origin = value_bytes.decode("latin-1")
            elif key == "content-length":
                try:
                    content_length = int(value_bytes)
                except ValueError:
                    content_length = None
            elif key == "x-forwarded-for":
                forwarded_for = value_bytes.decode("latin-1")
            elif key == "last-event-id":
                last_event_id = value_bytes.decode("latin-1")
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if self._hops and forwarded_for:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            if hops:
                address = hops[max(0, len(hops) - self._hops)]
        if not request_id:
            request_id = secrets.token_hex(16)
        if self._tracer is None and not any(k == "traceparent" for k, _ in forwarded):
            # Start the trace here so every service's logs share one id for this request.
            forwarded.append(
                ("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")
            )
        return Request(
            scope=scope,
            receive=receive,
            verb=scope["method"],
            raw_path=raw_path,
            request_id=request_id,
            address=address,
            authorization=authorization,
            api_key=api_key,
            origin=origin,
            content_length=content_length,
            forwarded=forwarded,
            last_event_id=last_event_id,
        )

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (self._any_origin or origin in self._origins):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", CORS_EXPOSE_HEADERS),
            (b"vary", b"origin"),
        ]

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = self._request(scope, receive)
        common = [
            (b"x-request-id", request.request_id.encode()),
            *self._cors_headers(request.origin),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *common]
            await send(message)

        if self._tracer is None:
            status = await self._answer(request, send_with_headers)
        else:
            # A server span continuing the caller's trace; the gRPC client interceptors put
            # its context on the backend calls (so it is not forwarded by hand).
            carrier = {k: v for k, v in request.forwarded if k in _TRACE_HEADERS}
            request.forwarded = [(k, v) for k, v in request.forwarded if k not in _TRACE_HEADERS]
            with self._tracer.start_as_current_span(
                f"HTTP {request.verb}",
                context=propagate.extract(carrier),
                kind=trace.SpanKind.SERVER,
            ) as span:
                status = await self._answer(request, send_with_headers)
                if request.route_label:
                    span.update_name(request.route_label)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("tenpo.request_id", request.request_id)
        self.requests_served += 1
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        if self.metrics is not None:
            # The route template (labels read "GET /v1/..."), never the concrete path.
            route = request.route_label.partition(" ")[2] or "unmatched"
            self.metrics.record(
                request.verb,
                route,
                status,
                time.perf_counter() - started,
            )
        if self.settings.access_log and log.isEnabledFor(logging.INFO):
            caller = request.caller
            log.info(
                "http request",
                extra={
                    "http_method": request.verb,
                    # The route template, never the concrete path: paths hold ids and e-mails.
                    # No client address either: it is personal data too.
                    "route": request.route_label or "unmatched",
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "request_id": request.request_id,
                    "principal": principal_label(caller.principal) if caller else "unknown",
                    "channel": channel_name(caller.channel) if caller else "",
                },
            )

    async def _answer(self, request: Request, send: Send) -> int:
        """Dispatch, turning every failure into an AIP-193 response; the HTTP status."""
        try:
            return await self._dispatch(request, send)
        except HttpError as error:
            await send_json(send, error.status, error.body, error.headers)
            return error.status
        except DomainError as error:
            failure = from_domain_error(error)
            await send_json(send, failure.status, failure.body, failure.headers)
            return failure.status
        except ClientDisconnected:
            return 499
        except Exception:
            log.exception("unexpected gateway error", extra={"request_id": request.request_id})
            failure = http_error(
                500,
                grpc.StatusCode.INTERNAL,
                f"internal error (request id {request.request_id})",
                "INTERNAL",
                {"request_id": request.request_id},
            )
            await send_json(send, 500, failure.body, failure.headers)
            return 500

    async def _dispatch(self, request: Request, send: Send) -> int:
        verb, path = request.verb, request.raw_path
        if verb == "OPTIONS":
            return await self._preflight(request, send)
        # RFC 9110: HEAD is GET without content (uvicorn writes no body for it); load
        # balancers and uptime checks probe /readyz with it. Streams are not opened for it.
        head = verb == "HEAD"
        if head:
            verb = "GET"
        handler = self._handler(verb, path)
        if handler is not None and not (head and not getattr(handler, "serves_head", True)):
            return await handler(request, send)
        matched = self.router.match(verb, path) if handler is None else None
        if matched is None:
            allowed = self.allowed_verbs(path)
            if allowed:
                refusal = http_error(
                    405,
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{request.verb} is not allowed here; use {', '.join(allowed)}",
                    "METHOD_NOT_ALLOWED",
                )
                # RFC 9110: a 405 lists what the resource does allow; OPTIONS is always
                # answered (CORS preflight).
                refusal.headers.append((b"allow", ", ".join([*allowed, "OPTIONS"]).encode()))
                raise refusal
            raise http_error(404, grpc.StatusCode.NOT_FOUND, "no such route", "ROUTE_NOT_FOUND")
        route, path_values = matched
        request.route_label = f"{route.verb} {route.template}"
        method = route.method
        caller = await self.policy.identify(request.authorization, request.api_key, request.address)
        request.caller = caller
        self.policy.authorize(method, caller)
        self.policy.limit(method.full_name, caller)
        body = await request.body(self.settings.max_body_bytes) if route.binding.body else None
        message = build_request(
            route, path_values, request.query(), body, self.settings.max_page_size
        )
        call = self.backends.raw_callable(method)
        try:
            raw = await call(
                message.SerializeToString(),
                metadata=request.backend_metadata(caller),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        payload = self.rendered.get(route, raw)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(payload))],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return 200

    def _handler(self, verb: str, path: str) -> Handler | None:
        handler = self.exact.get((verb, path))
        if handler is None:
            for handler_verb, prefix, candidate in self.prefixed:
                if handler_verb == verb and path.startswith(prefix):
                    return candidate
        return handler

    def allowed_verbs(self, path: str) -> list[str]:
        """Verbs served for ``path``: transcoded routes and the hand-registered handlers."""
        verbs = set(self.router.allowed_verbs(path))
        verbs.update(verb for verb, exact in self.exact if exact == path)
        verbs.update(verb for verb, prefix, _ in self.prefixed if path.startswith(prefix))
        if "GET" in verbs:
            handler = self._handler("GET", path)
            if handler is None or getattr(handler, "serves_head", True):
                verbs.add("HEAD")
        return sorted(verbs)

    async def _preflight(self, request: Request, send: Send) -> int:
        headers: list[tuple[bytes, bytes]] = []
        origin = request.origin
        if origin is not None and (self._any_origin or origin in self._origins):
            headers = [
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS),
                (b"access-control-max-age", str(self.settings.cors_max_age_seconds).encode()),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = to_json(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *JSON_HEADERS,
                (b"content-length", b"%d" % len(payload)),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", b"%d" % len(body)),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["ClientDisconnected", "GatewayApp", "Request", "send_bytes", "send_json"]
