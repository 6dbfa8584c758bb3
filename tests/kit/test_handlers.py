"""wrap_handler keeps a handler's kind and serializers and wraps its behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tenpo.kit.handlers import StreamBehaviour, UnaryBehaviour, wrap_handler


async def _one(request: Any, context: Any) -> Any:
    if not isinstance(request, str):
        request = "".join([r async for r in request])
    return f"<{request}>"


async def _many(request: Any, context: Any) -> AsyncIterator[Any]:
    if not isinstance(request, str):
        request = "".join([r async for r in request])
    for char in request:
        yield char


async def _requests() -> AsyncIterator[str]:
    for part in ("a", "b"):
        yield part


def _deserialize(data: bytes) -> str:
    return data.decode()


KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler(_one, _deserialize, str.encode),
    "stream_unary": grpc.stream_unary_rpc_method_handler(_one, _deserialize, str.encode),
    "unary_stream": grpc.unary_stream_rpc_method_handler(_many, _deserialize, str.encode),
    "stream_stream": grpc.stream_stream_rpc_method_handler(_many, _deserialize, str.encode),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_every_kind_is_wrapped_and_keeps_its_shape(kind: str) -> None:
    seen: list[tuple[str, bool]] = []

    def around_unary(inner: UnaryBehaviour, request_streaming: bool) -> UnaryBehaviour:
        async def wrapped(request: Any, context: Any) -> Any:
            seen.append(("unary", request_streaming))
            return "!" + await inner(request, context)

        return wrapped

    def around_stream(inner: StreamBehaviour, request_streaming: bool) -> StreamBehaviour:
        async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
            seen.append(("stream", request_streaming))
            async for item in inner(request, context):
                yield item.upper()

        return wrapped

    original = KINDS[kind]
    wrapped: Any = wrap_handler(original, unary=around_unary, stream=around_stream)
    behaviour = getattr(wrapped, kind)
    assert behaviour is not None
    assert [k for k in KINDS if getattr(wrapped, k)] == [kind]
    assert wrapped.request_deserializer is original.request_deserializer
    assert wrapped.response_serializer is original.response_serializer
    request_streaming = kind.startswith("stream_")
    request: Any = _requests() if request_streaming else "ab"
    if kind.endswith("_unary"):
        assert await behaviour(request, None) == "!<ab>"
        assert seen == [("unary", request_streaming)]
    else:
        assert [item async for item in behaviour(request, None)] == ["A", "B"]
        assert seen == [("stream", request_streaming)]


def test_the_request_deserializer_can_be_replaced() -> None:
    def other(data: bytes) -> str:
        return "other"

    wrapped = wrap_handler(
        KINDS["unary_unary"],
        unary=lambda inner, _: inner,
        stream=lambda inner, _: inner,
        request_deserializer=other,
    )
    assert wrapped.request_deserializer is other
