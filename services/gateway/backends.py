"""Gateway upstream layer: one gRPC channel per backend service, callables per method.

Channels come from the kit (deadline on every call, UNAVAILABLE retried with backoff).
Callables are created once per method and cached: building a multicallable per request
would cost more than the call's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from tenpo.kit import errors
from tenpo.kit.clients import create_channel

Serializer = Callable[[Any], bytes] | None


class Backends:
    def __init__(self, settings: GatewaySettings, schema: Schema) -> None:
        self._settings = settings
        self._schema = schema
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, bool], Any] = {}
        self._trace = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)

    @property
    def traced(self) -> bool:
        """Whether calls are traced (an exporter is configured)."""
        return self._trace

    def configured(self, owner: str) -> bool:
        return self._settings.target(owner) is not None

    def channel(self, owner: str, *, raw: bool = False) -> grpc.aio.Channel:
        """The channel to ``owner``. The raw one (gRPC ingress) has no interceptor: the
        ingress sets each call's deadline and metadata (trace context included) itself,
        and an intercepted grpc.aio call costs extra Python tasks per call."""
        key = f"{owner}\0raw" if raw else owner
        channel = self._channels.get(key)
        if channel is None:
            target = self._settings.target(owner)
            if target is None:
                raise errors.Unavailable(
                    f"no backend is configured for {owner}", reason="BACKEND_NOT_CONFIGURED"
                )
            channel = create_channel(
                target,
                timeout_seconds=self._settings.backend_timeout_seconds,
                trace=self._trace and not raw,
                call_defaults=not raw,
            )
            self._channels[key] = channel
        return channel

    def _callable(self, method: Method, raw: bool) -> Any:
        """A multicallable for ``method``; ``raw`` passes bytes through (gRPC ingress)."""
        key = (method.path, raw)
        found = self._callables.get(key)
        if found is not None:
            return found
        channel = self.channel(method.owner, raw=raw)
        serialize: Serializer = None
        deserialize: Callable[[bytes], Any] | None = None
        if not raw:
            serialize = _serialize
            deserialize = method.response_class().FromString
        if method.client_streaming and method.server_streaming:
            found = channel.stream_stream(method.path, serialize, deserialize)
        elif method.client_streaming:
            found = channel.stream_unary(method.path, serialize, deserialize)
        elif method.server_streaming:
            found = channel.unary_stream(method.path, serialize, deserialize)
        else:
            found = channel.unary_unary(method.path, serialize, deserialize)
        self._callables[key] = found
        return found

    def callable(self, method: Method) -> Any:
        return self._callable(method, raw=False)

    def raw_callable(self, method: Method) -> Any:
        return self._callable(method, raw=True)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._callables.clear()


def _serialize(message: Any) -> Any:
    return message.SerializeToString()
