"""The one server interceptor: authentication, error mapping and call logging."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServicerContext

from tenpo.kit import auth
from tenpo.kit.errors import DomainError
from tenpo.kit.grpc_errors import internal_status, status_code, to_rpc_status
from tenpo.kit.telemetry import current_trace_id

log = logging.getLogger("tenpo.rpc")

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class _PrincipalCache:
    """Verified tokens by their exact text: verifying an ES256 signature costs far more than
    the call it guards, and a device sends the same token thousands of times. Expiry is
    checked again on every hit."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[str, auth.Principal] = OrderedDict()

    def get(self, token: str) -> auth.Principal | None:
        principal = self._entries.get(token)
        if principal is None:
            return None
        if principal.expires_at is not None and principal.expires_at.timestamp() <= time.time():
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return principal

    def put(self, token: str, principal: auth.Principal) -> None:
        self._entries[token] = principal
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class KitServerInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call (a bad token fails even on public methods), puts the principal
    in the call context, maps DomainError to a status with ErrorInfo/BadRequest details and
    anything unexpected to INTERNAL with only a trace id."""

    def __init__(self, verifier: auth.TokenVerifier) -> None:
        self._verifier = verifier
        self._cache = _PrincipalCache()
        # Wrapped handlers by method: built once, not on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def _principal(self, context: ServicerContext) -> auth.Principal:
        metadata = context.invocation_metadata() or ()
        token = next(
            (str(v) for k, v in metadata if k == "authorization" and isinstance(v, str)), None
        )
        if token is not None:
            cached = self._cache.get(token)
            if cached is not None:
                return cached
        principal = await auth.authenticate(metadata, self._verifier)
        if token is not None and principal.is_authenticated:
            self._cache.put(token, principal)
        return principal

    async def _fail(self, context: ServicerContext, method: str, error: Exception) -> None:
        if isinstance(error, DomainError):
            status = to_rpc_status(error)
            code = status_code(error)
            log.info(
                "rpc rejected", extra={"method": method, "code": code.name, "reason": error.reason}
            )
        else:
            trace_id = current_trace_id()
            log.exception("unexpected error", extra={"method": method, "trace_id": trace_id})
            status = internal_status(trace_id)
            code = grpc.StatusCode.INTERNAL
        await context.abort(
            code,
            status.message,
            trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        fail = self._fail
        principal_of = self._principal

        if handler.unary_unary:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: ServicerContext) -> Any:
                try:
                    with auth.use_principal(await principal_of(context)):
                        return await inner_uu(request, context)
                except Exception as error:
                    if _is_abort(error):
                        raise
                    await fail(context, method, error)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
                try:
                    with auth.use_principal(await principal_of(context)):
                        async for response in inner_us(request, context):
                            yield response
                except Exception as error:
                    if _is_abort(error):
                        raise
                    await fail(context, method, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            inner_su: Any = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: ServicerContext) -> Any:
                try:
                    with auth.use_principal(await principal_of(context)):
                        return await inner_su(requests, context)
                except Exception as error:
                    if _is_abort(error):
                        raise
                    await fail(context, method, error)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream:
            inner_ss: Any = handler.stream_stream

            async def stream_stream(
                requests: AsyncIterator[Any], context: ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    with auth.use_principal(await principal_of(context)):
                        async for response in inner_ss(requests, context):
                            yield response
                except Exception as error:
                    if _is_abort(error):
                        raise
                    await fail(context, method, error)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


def _is_abort(error: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; let it through untouched.
    return isinstance(error, grpc.aio.AbortError)
