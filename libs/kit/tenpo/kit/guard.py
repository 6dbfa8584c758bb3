"""The call guard around every RPC: authentication, access rules, error mapping, rejection logs.

It wraps method handlers when they are registered rather than running as a server
interceptor: grpc.aio awaits an interceptor coroutine on every call, which on a hot read
path cost a fifth of the throughput; a wrapped handler costs nothing until it runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
from grpc.aio import ServicerContext
from grpc_status import rpc_status
from opentelemetry.metrics import MeterProvider

from tenpo.kit import access, auth
from tenpo.kit.errors import DomainError
from tenpo.kit.faults import expected_failure
from tenpo.kit.grpc_errors import internal_status, status_code, to_rpc_status
from tenpo.kit.handlers import StreamBehaviour, UnaryBehaviour, wrap_handler
from tenpo.kit.metrics import RpcErrors
from tenpo.kit.ratelimit import TokenBucketLimiter, refuse_if_waiting
from tenpo.kit.telemetry import current_trace_id
from tenpo.kit.validation import checked_deserializer, checked_requests, reject_malformed

log = logging.getLogger("tenpo.rpc")

_MAX_GENERIC_METHODS = 10_000
#: Set (to ``direct``) by the gateway's edge on calls it sends straight to a service, past
#: the gateway's own checks; the edge drops any value a client sent.
EDGE_HEADER = "x-tenpo-edge"
#: Set by the edge on the calls it passes to the gateway's Python ingress: the client's
#: address, for the per-address limits (the edge drops any value a client sent).
EDGE_CLIENT_HEADER = "x-tenpo-edge-client"


def _via_edge(metadata: Any) -> bool:
    return any(key == EDGE_HEADER for key, _ in metadata)


class CallGuard:
    """Authenticates every call (a bad token fails even on public methods), enforces the
    method's access rule from its proto (:mod:`tenpo.kit.access`), puts the principal in
    the call context, maps DomainError to a status with ErrorInfo/BadRequest
    details and anything unexpected to INTERNAL with only a trace id.

    A call that came straight through the gateway's edge (``x-tenpo-edge``) skipped the
    gateway's per-principal rate limit: with ``edge_limiter`` the guard takes a token per
    signed-in principal for such calls (services, which never come that way, excepted) and
    refuses with RESOURCE_EXHAUSTED ``RATE_LIMITED`` as the gateway would."""

    def __init__(
        self,
        verifier: auth.TokenVerifier,
        meter_provider: MeterProvider | None = None,
        *,
        edge_limiter: TokenBucketLimiter | None = None,
    ) -> None:
        self._verifier = verifier
        self._errors = RpcErrors(meter_provider)
        self._edge_limiter = edge_limiter

    async def _fail(self, context: ServicerContext, method: str, error: Exception) -> None:
        error = expected_failure(error) or error
        self._errors.record(method, error.reason if isinstance(error, DomainError) else "INTERNAL")
        if isinstance(error, DomainError):
            status = to_rpc_status(error)
            log.info(
                "rpc rejected",
                extra={"method": method, "code": status_code(error).name, "reason": error.reason},
            )
        else:
            trace_id = current_trace_id()
            log.exception("unexpected error", extra={"method": method, "trace_id": trace_id})
            status = internal_status(trace_id)
        # grpc_status builds the grpc-status-details-bin trailer. Measured against the trailer
        # built by hand: about 2 µs more per failed call (3.6 against 1.4 µs), which vanishes
        # in the call itself (a rejected call costs ~700 µs end to end either way).
        await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The guarded version of one method handler."""
        fail = self._fail
        verifier = self._verifier
        # The contract's access rule, checked before the servicer sees the request: a caller
        # who may not call learns nothing from validation. Looked up once, at registration.
        rule = access.rule_for(method)

        edge_limiter = self._edge_limiter

        async def principal_of(context: ServicerContext) -> auth.Principal:
            metadata = context.invocation_metadata() or ()
            principal = await auth.authenticate(metadata, verifier)
            if rule is not None:
                rule.check(principal)
            if (
                edge_limiter is not None
                and principal.is_authenticated
                and principal.kind is not auth.PrincipalKind.SERVICE
                and _via_edge(metadata)
            ):
                _limit(edge_limiter, principal)
            return principal

        def guard_unary(inner: UnaryBehaviour, request_streaming: bool) -> UnaryBehaviour:
            async def guarded(request: Any, context: ServicerContext) -> Any:
                try:
                    token = auth.enter_principal(await principal_of(context))
                    try:
                        if request_streaming:
                            request = checked_requests(request)
                        else:
                            reject_malformed(request)
                        return await inner(request, context)
                    finally:
                        auth.exit_principal(token)
                except Exception as error:
                    if isinstance(error, grpc.aio.AbortError):
                        raise
                    await fail(context, method, error)

            return guarded

        def guard_stream(inner: StreamBehaviour, request_streaming: bool) -> StreamBehaviour:
            async def guarded(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
                try:
                    with auth.use_principal(await principal_of(context)):
                        if request_streaming:
                            request = checked_requests(request)
                        else:
                            reject_malformed(request)
                        async for response in inner(request, context):
                            yield response
                except Exception as error:
                    if isinstance(error, grpc.aio.AbortError):
                        raise
                    await fail(context, method, error)

            return guarded

        return wrap_handler(
            handler,
            unary=guard_unary,
            stream=guard_stream,
            request_deserializer=checked_deserializer(handler.request_deserializer),
        )


def _limit(limiter: TokenBucketLimiter, principal: auth.Principal) -> None:
    refuse_if_waiting(limiter.take(f"{principal.kind.value}:{principal.subject}"))


class _GuardedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler (e.g. a proxy) whose handlers are guarded on first use."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: CallGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        wrapped = self._guard.wrap(method, handler)
        # A proxy sees caller-chosen method names: cache a bounded number of them.
        if len(self._wrapped) < _MAX_GENERIC_METHODS:
            self._wrapped[method] = wrapped
        return wrapped


class GuardedServer:
    """Stands in for the grpc.aio server while generated ``add_*_to_server`` functions (or
    a service's own code) register handlers, and registers guarded versions instead."""

    def __init__(self, server: grpc.aio.Server, guard: CallGuard) -> None:
        self._server = server
        self._guard = guard

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGenericHandler(h, self._guard) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        guarded = {name: self._guard.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        self._server.add_registered_method_handlers(service, guarded)  # type: ignore[attr-defined]
