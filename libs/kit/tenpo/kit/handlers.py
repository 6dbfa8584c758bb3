"""One way to wrap a gRPC method handler of any kind (unary or streaming requests and
responses) in a behaviour of one's own: the kit's call guard and the gateway's ingress log
both do, and a handler kind written out four times is a kind that gets forgotten in one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServicerContext

#: A behaviour with one response (unary-unary, stream-unary): request or request iterator.
UnaryBehaviour = Callable[[Any, ServicerContext], Awaitable[Any]]
#: A behaviour with a response stream (unary-stream, stream-stream).
StreamBehaviour = Callable[[Any, ServicerContext], AsyncIterator[Any]]
Deserializer = Callable[[bytes], Any]

_KEEP: Any = object()


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    *,
    unary: Callable[[UnaryBehaviour, bool], UnaryBehaviour],
    stream: Callable[[StreamBehaviour, bool], StreamBehaviour],
    request_deserializer: Deserializer | None = _KEEP,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind whose behaviour is ``unary(inner, request_streaming)`` for
    a single response or ``stream(inner, request_streaming)`` for a response stream; the
    serializers stay unless ``request_deserializer`` replaces the request's."""
    deserialize = (
        handler.request_deserializer if request_deserializer is _KEEP else request_deserializer
    )
    serialize = handler.response_serializer
    # Typed as the synchronous API's callables in grpc's stubs; on grpc.aio they are async.
    kind: Any = handler
    if kind.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(kind.unary_unary, False), deserialize, serialize
        )
    if kind.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(kind.stream_unary, True), deserialize, serialize
        )
    if kind.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(kind.unary_stream, False), deserialize, serialize
        )
    return grpc.stream_stream_rpc_method_handler(
        stream(kind.stream_stream, True), deserialize, serialize
    )
