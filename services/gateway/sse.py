"""Gateway live-update layer: a server-streaming RPC served as server-sent events.

``GET <path>?<request fields>`` starts the RPC (request fields from the query string, as
for any GET route). The first message (or error) is awaited before answering, so a bad
request still gets a normal HTTP error; after that every message is one ``data:`` event
(JSON), a comment line keeps idle connections open, and a backend failure ends the stream
with an ``event: error`` carrying the AIP-193 body. The stream closes after
``stream_max_seconds``; clients reconnect (EventSource does so by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import json_format

from services.gateway.access import AccessPolicy, Caller
from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.descriptors import HttpBinding, Method
from services.gateway.errors import from_rpc_error
from services.gateway.http import Request, Send
from services.gateway.routes import Route, build_route
from services.gateway.transcode import build_request, to_json
from tenpo.kit.errors import ResourceExhausted

KEY_PARAMETER = "key"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class OpenStreams:
    """Open streams per signed-in principal, in this gateway process. The per-address
    connection cap bounds what one address holds over HTTP/1.1, and the rate limits bound
    how fast streams start, but not how many one token keeps open from many addresses: each
    is a backend stream for up to ``stream_max_seconds`` (the order stream polls its
    database). Anonymous callers have no principal to count: theirs are counted per client
    address (``anonymous_limit``), since one HTTP/2 connection to the gRPC ingress carries
    any number of streams."""

    def __init__(self, limit: int, anonymous_limit: int = 0) -> None:
        self.limit = limit
        self.anonymous_limit = anonymous_limit
        self._open: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> OpenStreams:
        return cls(settings.stream_max_per_principal, settings.stream_max_per_address)

    @contextlib.contextmanager
    def hold(self, caller: Caller) -> Iterator[None]:
        principal = caller.principal
        if principal.is_authenticated:
            key, limit = f"{principal.kind.value}:{principal.subject}", self.limit
        else:
            key, limit = f"address:{caller.address}", self.anonymous_limit
        if not limit:
            yield
            return
        held = self._open.get(key, 0)
        if held >= limit:
            raise ResourceExhausted(
                f"at most {limit} open streams per caller; close one first",
                reason="STREAMS_EXHAUSTED",
                metadata={"max_streams": str(limit)},
            )
        self._open[key] = held + 1
        try:
            yield
        finally:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]


class StreamEndpoint:
    #: A HEAD would open a backend stream only to drop it: 405.
    serves_head = False

    def __init__(
        self,
        path: str,
        method: Method,
        settings: GatewaySettings,
        backends: Backends,
        policy: AccessPolicy,
        drain: asyncio.Event | None = None,
        streams: OpenStreams | None = None,
    ) -> None:
        if not method.server_streaming or method.client_streaming:
            raise ValueError(f"{method.full_name} is not a server-streaming method")
        self.path = path
        self.method = method
        self.route: Route = build_route(method, HttpBinding("GET", path, "", ""))
        self._settings = settings
        self._backends = backends
        self._policy = policy
        self._drain = drain or asyncio.Event()
        self._streams = streams or OpenStreams.from_settings(settings)

    async def __call__(self, request: Request, send: Send) -> int:
        request.route_label = f"GET {self.path} (SSE)"
        # Browsers' EventSource cannot send headers, so the publishable key (public by
        # design: it ships in the web page) may come as ?key= here. Tokens never do: URLs
        # end up in logs and histories.
        query = request.query()
        keys = [v for k, v in query if k == KEY_PARAMETER]
        query = [(k, v) for k, v in query if k != KEY_PARAMETER]
        caller = await self._policy.identify(
            request.authorization, request.api_key or (keys[0] if keys else None), request.address
        )
        request.caller = caller
        self._policy.authorize(self.method, caller)
        self._policy.limit(self.method.full_name, caller)
        message = build_request(self.route, {}, query, None, self._settings.max_page_size)
        with self._streams.hold(caller):
            call = self._backends.callable(self.method)(
                message,
                metadata=request.backend_metadata(caller),
                timeout=self._settings.stream_max_seconds,
            )
            try:
                return await self._relay(call, request, send)
            finally:
                call.cancel()

    async def _relay(self, call: Any, request: Request, send: Send) -> int:
        read: asyncio.Future[Any] = asyncio.ensure_future(call.read())
        disconnect = asyncio.ensure_future(_wait_disconnect(request))
        draining = asyncio.ensure_future(self._drain.wait())
        try:
            done, _ = await asyncio.wait(
                {read, disconnect},
                timeout=self._settings.backend_timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnect in done:
                return 499
            if read in done and read.exception() is not None:
                error = read.exception()
                if isinstance(error, grpc.aio.AioRpcError):
                    raise from_rpc_error(error) from None
                raise error  # type: ignore[misc]
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send(
                {"type": "http.response.body", "body": b": stream open\n\n", "more_body": True}
            )
            event_id = 0
            heartbeat = self._settings.sse_heartbeat_seconds
            while True:
                if not read.done():
                    done, _ = await asyncio.wait(
                        {read, disconnect, draining},
                        timeout=heartbeat,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if disconnect in done:
                        return 200
                    if draining in done:
                        # The gateway is stopping: tell the client to reconnect (elsewhere).
                        await _send_chunk(send, b"event: end\nretry: 1000\ndata: {}\n\n")
                        break
                    if not done:
                        await _send_chunk(send, b": keep-alive\n\n")
                        continue
                try:
                    item = read.result()
                except grpc.aio.AioRpcError as error:
                    failure = from_rpc_error(error)
                    await _send_chunk(
                        send, b"event: error\ndata: " + to_json(failure.body) + b"\n\n"
                    )
                    break
                if item is grpc.aio.EOF:  # type: ignore[attr-defined]
                    await _send_chunk(send, b"event: end\ndata: {}\n\n")
                    break
                event_id += 1
                payload = to_json(json_format.MessageToDict(item))
                await _send_chunk(send, b"id: %d\ndata: %s\n\n" % (event_id, payload))
                read = asyncio.ensure_future(call.read())
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return 200
        finally:
            for task in (read, disconnect, draining):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task


async def _send_chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
