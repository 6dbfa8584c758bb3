"""Gateway error layer: gRPC status → HTTP status and the AIP-193 JSON error body.

Body: ``{"error": {"code": <http status>, "message": ..., "status": "NOT_FOUND",
"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": ...}, ...]}}``.
Every error carries an ErrorInfo, so clients can always branch on ``reason``.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from tenpo.kit.errors import DomainError
from tenpo.kit.grpc_errors import ERROR_DOMAIN, to_rpc_status

STATUS_DETAILS_KEY = "grpc-status-details-bin"

#: google/rpc/code.proto's HTTP mapping.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class HttpError(Exception):
    """An error response, ready to send."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []


def _details_json(details: list[any_pb2.Any]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for detail in details:
        try:
            rendered.append(json_format.MessageToDict(detail))
        except (json_format.Error, TypeError, KeyError):
            # A detail type this gateway does not know: name it, drop the payload.
            rendered.append({"@type": detail.type_url})
    return rendered


def _error_info(reason: str, metadata: dict[str, str] | None = None) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    )
    return packed


def error_body(status: status_pb2.Status) -> tuple[int, dict[str, Any]]:
    code = _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    details = list(status.details)
    if not any(d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in details):
        details.insert(0, _error_info(code.name))
    http_status = HTTP_STATUS.get(code, 500)
    return http_status, {
        "error": {
            "code": http_status,
            "message": status.message or code.name,
            "status": code.name,
            "details": _details_json(details),
        }
    }


def status_of_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed backend call (details from the trailers)."""
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # noqa: S112 - malformed trailer: fall back to the code
                continue
            return status
    return backend_failure_status(error.code(), error.details())


def backend_failure_status(code: grpc.StatusCode, details: str | None = None) -> status_pb2.Status:
    """The status of a backend call that failed without status details (the service down,
    its deadline passed): stable reasons, no internal addresses. The edge answers its own
    proxy errors with the same (edge.py)."""
    # Transport failures are reported with details that may name internal addresses.
    message = details or code.name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        message = {
            grpc.StatusCode.UNAVAILABLE: "the service is unavailable; retry with backoff",
            grpc.StatusCode.UNKNOWN: "the service failed",
            grpc.StatusCode.INTERNAL: "the service failed",
        }[code]
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        message = "the service did not answer in time"
    reason = {
        grpc.StatusCode.UNAVAILABLE: "BACKEND_UNAVAILABLE",
        grpc.StatusCode.DEADLINE_EXCEEDED: "BACKEND_TIMEOUT",
    }.get(code, code.name)
    return status_pb2.Status(code=code.value[0], message=message, details=[_error_info(reason)])


def from_rpc_error(error: grpc.aio.AioRpcError) -> HttpError:
    status, body = error_body(status_of_rpc_error(error))
    return HttpError(status, body, _retry_after(body))


def from_domain_error(error: DomainError) -> HttpError:
    status, body = error_body(to_rpc_status(error))
    return HttpError(status, body, _retry_after(body))


def http_error(
    status: int,
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: dict[str, str] | None = None,
) -> HttpError:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": code.name,
            "details": _details_json([_error_info(reason, metadata)]),
        }
    }
    return HttpError(status, body, _retry_after(body))


def _retry_after(body: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    for detail in body["error"]["details"]:
        seconds = (detail.get("metadata") or {}).get("retry_after_seconds")
        if seconds:
            return [(b"retry-after", str(seconds).encode())]
    return []
