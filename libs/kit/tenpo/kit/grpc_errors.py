"""Domain errors on the wire: google.rpc.Status with ErrorInfo and BadRequest details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tenpo.kit.errors import DomainError, FieldViolation

#: ErrorInfo.domain for every error Tenpo raises.
ERROR_DOMAIN = "tenpo.dev"


def status_code(error: DomainError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code]


def to_rpc_status(error: DomainError) -> status_pb2.Status:
    """Build the google.rpc.Status (with ErrorInfo and BadRequest) for a domain error."""
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.field_violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    return status_pb2.Status(
        code=status_code(error).value[0], message=error.message or error.reason, details=details
    )


def internal_status(trace_id: str) -> status_pb2.Status:
    """The only thing a client learns about an unexpected failure: a trace id to quote."""
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"trace_id": trace_id}
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (trace id {trace_id})",
        details=[packed],
    )


@dataclass(frozen=True)
class ErrorDetails:
    """A decoded error, as a client sees it."""

    code: grpc.StatusCode
    message: str
    reason: str | None
    metadata: Mapping[str, str]
    field_violations: Sequence[FieldViolation]


def decode_error(error: grpc.RpcError) -> ErrorDetails:
    """Read the status, ErrorInfo reason and field violations out of a failed call."""
    from grpc_status import rpc_status

    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    reason: str | None = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    status = _status_from_aio_error(error) or rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    return ErrorDetails(code, message or "", reason, metadata, violations)


def _status_from_aio_error(error: grpc.RpcError) -> status_pb2.Status | None:
    # grpc.aio errors carry trailing metadata as an aio.Metadata, which rpc_status.from_call
    # does not read; look for the status-details-bin entry ourselves.
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    if not trailing:
        return None
    for key, value in trailing:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None
