"""Request bytes that do not parse: INVALID_ARGUMENT from the guard, not UNKNOWN from gRPC.

gRPC runs a method's request deserializer before any handler code; when protobuf refuses the
bytes (truncated, a wrong wire type, invalid UTF-8 in a string field, nesting past its
limit) gRPC itself ends the call with UNKNOWN and the service never learns why. The guard
registers a deserializer that hands such a request on as a ``MalformedRequest`` instead, and
rejects it as the caller's mistake once the caller is authenticated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from tenpo.kit.errors import InvalidArgument

Deserializer = Callable[[bytes], Any]


class MalformedRequest:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def checked_deserializer(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer``, answering a ``MalformedRequest`` where it would raise."""
    if deserializer is None:  # a handler on raw bytes (a proxy) parses nothing
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as error:  # DecodeError, RecursionError: all the caller's bytes
            return MalformedRequest(type(error).__name__)

    return deserialize


def reject_malformed(request: Any) -> None:
    """INVALID_ARGUMENT ``REQUEST_MALFORMED`` for a request that did not parse."""
    if type(request) is MalformedRequest:
        # Protobuf's message names the field type and bytes at fault; the reason is enough
        # for a client, and nothing of the caller's bytes is echoed.
        raise InvalidArgument(
            "the request message could not be parsed (truncated, wrong field types or "
            "invalid UTF-8 in a string field)",
            reason="REQUEST_MALFORMED",
            metadata={"error": request.problem},
        )


async def checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose messages are checked as they arrive."""
    async for request in requests:
        reject_malformed(request)
        yield request
