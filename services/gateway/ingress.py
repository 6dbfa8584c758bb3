"""Gateway gRPC ingress: any ``tenpo.*`` call, unary or streaming, forwarded as raw bytes to
the service that owns it, after authentication (the kit call guard verifies the token),
the access policy and the rate limits. Metadata travels along, except what only the gateway
may set (``x-tenpo-channel`` and its proof) or what belongs to this hop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc.aio import ServicerContext
from grpc_status import rpc_status
from opentelemetry import propagate

from services.gateway.access import API_KEY_HEADER, AccessPolicy, Caller
from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from services.gateway.errors import STATUS_DETAILS_KEY, status_of_rpc_error
from services.gateway.sse import OpenStreams
from tenpo.kit import errors
from tenpo.kit.auth import CHANNEL_HEADER, CHANNEL_PROOF_HEADER
from tenpo.kit.errors import DomainError
from tenpo.kit.grpc_errors import to_rpc_status
from tenpo.kit.guard import EDGE_CLIENT_HEADER, EDGE_HEADER
from tenpo.kit.handlers import StreamBehaviour, UnaryBehaviour, wrap_handler

log = logging.getLogger("tenpo.gateway.access")

#: Metadata that belongs to the hop (or is re-set by the gateway), never forwarded.
_HOP_METADATA = frozenset(
    {
        "authorization",  # re-added from the verified caller
        API_KEY_HEADER,
        CHANNEL_HEADER,
        CHANNEL_PROOF_HEADER,
        EDGE_HEADER,  # only the edge marks calls it sends straight to a service
        EDGE_CLIENT_HEADER,  # the client's address, as the edge saw it
        "content-type",
        "user-agent",
        "te",
        "host",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
    }
)
_PASS_TRAILERS = frozenset({STATUS_DETAILS_KEY, "retry-after"})


def _peer_address(context: ServicerContext) -> str:
    peer = context.peer() or ""
    # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer or "unknown"


async def _abort_rate_limited(context: ServicerContext, error: errors.ResourceExhausted) -> None:
    """RESOURCE_EXHAUSTED with the details the guard would send, plus a ``retry-after``
    trailer: clients and proxies read that without decoding google.rpc details."""
    trailers: list[tuple[str, str | bytes]] = list(
        rpc_status.to_status(to_rpc_status(error)).trailing_metadata
    )
    seconds = error.metadata.get("retry_after_seconds")
    if seconds:
        trailers.append(("retry-after", seconds))
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED, error.message, trailing_metadata=tuple(trailers)
    )


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class IngressHandler(grpc.GenericRpcHandler):
    def __init__(
        self,
        settings: GatewaySettings,
        schema: Schema,
        backends: Backends,
        policy: AccessPolicy,
        drain: asyncio.Event | None = None,
        streams: OpenStreams | None = None,
    ) -> None:
        self._settings = settings
        self._drain = drain or asyncio.Event()
        # Streaming calls hold a backend stream for up to stream_max_seconds: one principal
        # may hold at most stream_max_per_principal of them, counted with its SSE streams.
        self._streams = streams or OpenStreams.from_settings(settings)
        self._schema = schema
        self._backends = backends
        self._policy = policy
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._traced = backends.traced
        # Behind the edge every peer is HAProxy: the per-address limits key on the address
        # it saw. Only then is the header believed (the ingress port is loopback or the
        # pod's own, not reachable by clients).
        self._behind_edge = settings.edge != "off" or settings.behind_edge

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        path = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is not None:
            return handler
        method = self._schema.methods.get(path)
        if method is None or not self._backends.configured(method.owner):
            return None  # UNIMPLEMENTED
        handler = _logged(method, self._build(method), self._settings.access_log)
        self._handlers[path] = handler
        return handler

    def method_handlers(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        """Every proxied method's handler, by service and method name, to register with
        the server up front: gRPC then routes each call in its core instead of asking
        this generic handler in Python (the schema knows every method at start-up)."""
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for path, method in self._schema.methods.items():
            handler = self.service(_CallDetails(path))
            if handler is not None:
                by_service.setdefault(method.service, {})[method.name] = handler
        return by_service

    async def _admit(
        self, method: Method, context: ServicerContext
    ) -> tuple[Caller, list[tuple[str, Any]]]:
        """Authorize and rate-limit the call; the caller and the metadata to send to the
        backend."""
        authorization: list[str] = []
        api_key: str | None = None
        forwarded: list[tuple[str, Any]] = []
        metadata: Any = context.invocation_metadata() or ()
        address = _peer_address(context)
        for key, value in metadata:
            if key == "authorization" and isinstance(value, str):
                authorization.append(value)
            elif key == API_KEY_HEADER and isinstance(value, str):
                api_key = value
            elif key == EDGE_CLIENT_HEADER and self._behind_edge and isinstance(value, str):
                address = value  # the edge sets it on every call, whatever the client sent
            elif key not in _HOP_METADATA and not key.startswith(":"):
                forwarded.append((key, value))
        caller: Caller = await self._policy.identify(authorization, api_key, address)
        self._policy.authorize(method, caller)
        try:
            self._policy.limit(method.full_name, caller)
        except errors.ResourceExhausted as error:
            await _abort_rate_limited(context, error)
        if self._traced:
            # The raw channel has no tracing interceptor: the backend continues this hop's
            # span instead of the caller's (whose trace context arrived in the metadata).
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            forwarded = [(k, v) for k, v in forwarded if k not in carrier]
            forwarded.extend(carrier.items())
        return caller, [*caller.backend_metadata(), *forwarded]

    def _timeout(self, context: ServicerContext, streaming: bool) -> float:
        limit = (
            self._settings.stream_max_seconds
            if streaming
            else self._settings.backend_timeout_seconds
        )
        remaining = context.time_remaining()
        return limit if remaining is None else max(0.0, min(limit, remaining))

    def _build(self, method: Method) -> grpc.RpcMethodHandler:
        admit = self._admit
        timeout = self._timeout
        streams = self._streams
        backends = self._backends
        drain = self._drain

        async def relay_error(context: ServicerContext, error: grpc.aio.AioRpcError) -> None:
            received: Any = error.trailing_metadata() or ()
            trailers = [(k, v) for k, v in received if k in _PASS_TRAILERS]
            details = error.details() or ""
            if not any(k == STATUS_DETAILS_KEY for k, _ in trailers):
                # A transport failure (the service down, its deadline passed) has no status
                # details and names internal addresses: say less, with the stable reason the
                # HTTP side gives (BACKEND_UNAVAILABLE, BACKEND_TIMEOUT), so clients can tell
                # it from the service's own UNAVAILABLE without parsing the message.
                status = status_of_rpc_error(error)
                details = status.message
                trailers.append((STATUS_DETAILS_KEY, status.SerializeToString()))
            await context.abort(error.code(), details, trailing_metadata=tuple(trailers))

        async def relay(call: Any, context: ServicerContext) -> AsyncIterator[bytes]:
            """The backend's messages until it ends, or until the gateway drains (the client
            then sees OK and reconnects, to another replica); a backend error is passed on to
            the caller, and the backend call never outlives the caller's."""
            draining = asyncio.ensure_future(drain.wait())
            try:
                while True:
                    read = asyncio.ensure_future(call.read())
                    done, _ = await asyncio.wait(
                        {read, draining}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if read not in done:
                        read.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await read
                        return
                    item = read.result()
                    if item is grpc.aio.EOF:  # type: ignore[attr-defined]
                        return
                    yield item
            except grpc.aio.AioRpcError as error:
                await relay_error(context, error)
            finally:
                draining.cancel()
                call.cancel()

        if method.client_streaming and method.server_streaming:

            async def stream_stream(
                requests: AsyncIterator[bytes], context: ServicerContext
            ) -> AsyncIterator[bytes]:
                caller, metadata = await admit(method, context)
                with streams.hold(caller):
                    call = backends.raw_callable(method)(
                        requests, metadata=metadata, timeout=timeout(context, True)
                    )
                    async for response in relay(call, context):
                        yield response

            return grpc.stream_stream_rpc_method_handler(stream_stream)
        if method.client_streaming:

            async def stream_unary(
                requests: AsyncIterator[bytes], context: ServicerContext
            ) -> bytes:
                caller, metadata = await admit(method, context)
                with streams.hold(caller):
                    try:
                        return await backends.raw_callable(method)(
                            requests, metadata=metadata, timeout=timeout(context, True)
                        )
                    except grpc.aio.AioRpcError as error:
                        await relay_error(context, error)
                        raise  # unreachable: abort raises

            return grpc.stream_unary_rpc_method_handler(stream_unary)
        if method.server_streaming:

            async def unary_stream(
                request: bytes, context: ServicerContext
            ) -> AsyncIterator[bytes]:
                caller, metadata = await admit(method, context)
                with streams.hold(caller):
                    call = backends.raw_callable(method)(
                        request, metadata=metadata, timeout=timeout(context, True)
                    )
                    async for response in relay(call, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream)

        async def unary_unary(request: bytes, context: ServicerContext) -> bytes:
            _, metadata = await admit(method, context)
            try:
                return await backends.raw_callable(method)(
                    request, metadata=metadata, timeout=timeout(context, False)
                )
            except grpc.aio.AioRpcError as error:
                await relay_error(context, error)
                raise

        return grpc.unary_unary_rpc_method_handler(unary_unary)


def _logged(method: Method, handler: grpc.RpcMethodHandler, enabled: bool) -> grpc.RpcMethodHandler:
    """Access log of ingress calls: method, status code, duration; nothing personal."""
    if not enabled:
        return handler
    name = method.full_name

    def record(started: float, code: str) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "grpc ingress call",
                extra={
                    "grpc_method": name,
                    "code": code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    def code_of(error: BaseException, context: ServicerContext) -> str:
        if isinstance(error, DomainError):
            return error.code
        found = context.code()
        return found.name if isinstance(found, grpc.StatusCode) else "UNKNOWN"

    def log_unary(inner: UnaryBehaviour, request_streaming: bool) -> UnaryBehaviour:
        async def unary(request: Any, context: ServicerContext) -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                return await inner(request, context)
            except BaseException as error:
                code = code_of(error, context)
                raise
            finally:
                record(started, code)

        return unary

    def log_stream(inner: StreamBehaviour, request_streaming: bool) -> StreamBehaviour:
        async def stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            started, code = time.perf_counter(), "OK"
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as error:
                code = code_of(error, context)
                raise
            finally:
                record(started, code)

        return stream

    return wrap_handler(handler, unary=log_unary, stream=log_stream)
