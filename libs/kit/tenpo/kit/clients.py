"""Outgoing gRPC: channels with a deadline on every call, UNAVAILABLE retried with backoff,
trace context and credentials propagated."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors


def _service_config(max_attempts: int) -> str:
    return json.dumps(
        {
            # Spread calls over every address the name resolves to (a headless Service in
            # Kubernetes); with a single address this changes nothing.
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],  # every method of every service
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


class _CallDefaults(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Gives every call a deadline (unless the caller set one) and, with a token provider,
    ``authorization`` (the caller's own token forwarded on behalf of the end user, or the
    service's client-credentials token).

    The deadline is set here, not as a service-config ``timeout``: grpcio applies that one
    about a second early (grpc/grpc#34547), so sub-second budgets failed at once."""

    def __init__(
        self, timeout_seconds: float, token_provider: Callable[[], str | None] | None
    ) -> None:
        self._timeout = timeout_seconds
        self._token_provider = token_provider

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = details.metadata
        token = self._token_provider() if self._token_provider else None
        if token:
            metadata = grpc.aio.Metadata(*(details.metadata or ()))
            if "authorization" not in metadata:
                metadata.add("authorization", f"Bearer {token}")
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout if details.timeout is not None else self._timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def create_channel(
    target: str,
    *,
    timeout_seconds: float = 5.0,
    max_attempts: int = 4,
    token_provider: Callable[[], str | None] | None = None,
    extra_interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    trace: bool = True,
    call_defaults: bool = True,
) -> grpc.aio.Channel:
    """An insecure (in-cluster, mesh-encrypted) channel to ``target`` (``host:port``).

    Every call gets ``timeout_seconds`` unless the caller sets a shorter deadline; calls that
    fail with UNAVAILABLE are retried up to ``max_attempts`` with exponential backoff.

    ``call_defaults=False`` (with ``trace=False`` and no token provider) gives a channel with
    no interceptor at all, for a caller that sets every call's deadline and metadata itself
    (the gateway's raw proxy): grpc.aio runs an intercepted call through extra Python tasks
    and objects, which on a proxy's hot path costs more than the forwarding itself.
    """
    interceptors: list[Any] = []
    if trace:
        interceptors.extend(aio_client_interceptors())
    if call_defaults or token_provider is not None:
        interceptors.append(_CallDefaults(timeout_seconds, token_provider))
    interceptors.extend(extra_interceptors)
    options = [
        ("grpc.service_config", _service_config(max_attempts)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
