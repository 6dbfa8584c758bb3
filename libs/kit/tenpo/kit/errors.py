"""Domain errors with stable reasons: plain Python, so the domain can raise them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldViolation:
    """One offending request field (``field`` is a path such as ``lines[2].quantity``)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every expected failure. Plain Python: the domain raises it, one interceptor
    maps it to a gRPC status. ``reason`` is a stable UPPER_SNAKE_CASE identifier clients
    may branch on; ``message`` is for developers, never shown to end users as is."""

    code: ClassVar[str] = "UNKNOWN"  # a google.rpc.Code name

    def __init__(
        self,
        message: str,
        reason: str = "UNSPECIFIED",
        *,
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.field_violations: Sequence[FieldViolation] = tuple(field_violations)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidArgument(DomainError):
    """The request is malformed; retrying it unchanged will fail again."""

    code = "INVALID_ARGUMENT"


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it does."""

    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A resource with the same identity exists."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state where the operation is allowed."""

    code = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrency conflict (stale etag, lost race); the client may re-read and retry."""

    code = "ABORTED"


class PermissionDenied(DomainError):
    """The caller is known but not allowed to do this."""

    code = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller presented no valid credentials."""

    code = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    """A quota, rate limit or capacity is used up."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency is down; the client may retry with backoff."""

    code = "UNAVAILABLE"


def require_fields(**values: object) -> None:
    """Raise InvalidArgument naming every empty required field at once."""
    missing = [name for name, value in values.items() if value in (None, "", 0, b"")]
    if missing:
        raise InvalidArgument(
            f"missing required field(s): {', '.join(missing)}",
            reason="REQUIRED_FIELD_MISSING",
            field_violations=[FieldViolation(name, "is required") for name in missing],
        )


def check_etag(requested: str, current: str, resource: str) -> None:
    """Optimistic concurrency: a client that names an etag must have read the current
    version; no etag means "whatever is current" (the caller holds the row lock)."""
    if requested and requested != current:
        raise Aborted(
            f"the {resource} changed since it was read",
            reason="ETAG_MISMATCH",
            metadata={"current_etag": current},
        )
