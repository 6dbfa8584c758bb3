"""Wire helpers every service's proto ⇄ domain translation shares.

Every conversion of a caller's value is checked here, once: an out-of-range enum number, a
Timestamp or Duration protobuf itself would refuse to convert (or one it would convert into
an ``OverflowError``), a NaN or infinite float become INVALID_ARGUMENT naming the field,
instead of a ``ValueError`` deep in a handler that the guard could only call INTERNAL."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar, overload

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from tenpo.kit.errors import FieldViolation, InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
E = TypeVar("E", bound=IntEnum)

#: The range google.protobuf.Timestamp documents: 0001-01-01T00:00:00Z ..
#: 9999-12-31T23:59:59.999999999Z (also what Python's datetime can hold).
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
#: The range google.protobuf.Duration documents: about ±10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
_NANOS = 1_000_000_000


def invalid_field(path: str, description: str, reason: str) -> InvalidArgument:
    """INVALID_ARGUMENT with one field violation: the shape of every check below."""
    return InvalidArgument(
        f"{path} {description}",
        reason=reason,
        field_violations=[FieldViolation(path, description)],
    )


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp (None stays unset). Built from the offset to the epoch, about
    three times cheaper than ``Timestamp.FromDatetime``; a naive value is local time."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone(UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def from_timestamp(message: Timestamp, path: str) -> datetime:
    """An aware UTC datetime from a caller's Timestamp, or INVALID_ARGUMENT
    ``TIMESTAMP_INVALID`` when it is outside Timestamp's documented range (year 1 to 9999)
    or its nanos are not 0..999,999,999. Sub-microsecond nanos are dropped."""
    seconds, nanos = message.seconds, message.nanos
    if not 0 <= nanos < _NANOS:
        raise invalid_field(path, "nanos must be 0..999999999", "TIMESTAMP_INVALID")
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        raise invalid_field(
            path, "must be between 0001-01-01 and 9999-12-31 (UTC)", "TIMESTAMP_INVALID"
        )
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def from_duration(message: Duration, path: str) -> timedelta:
    """A timedelta from a caller's Duration, or INVALID_ARGUMENT ``DURATION_INVALID`` when
    it is outside Duration's documented range (±315,576,000,000 s), its nanos are outside
    ±999,999,999 or their sign differs from the seconds' (protobuf's own ``ToTimedelta``
    accepts nanos of 2e9 and overflows on large seconds). Sub-microsecond nanos are
    dropped."""
    seconds, nanos = message.seconds, message.nanos
    if not -_NANOS < nanos < _NANOS or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        raise invalid_field(
            path, "nanos must be within ±999999999 with the sign of seconds", "DURATION_INVALID"
        )
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        raise invalid_field(path, "must be within ±315576000000 seconds", "DURATION_INVALID")
    return timedelta(seconds=seconds, microseconds=int(nanos / 1000))


def finite(value: float, path: str) -> float:
    """The float itself, or INVALID_ARGUMENT ``NUMBER_INVALID`` for NaN and ±infinity,
    which pass every range comparison unnoticed (``nan < 0`` and ``nan > 1000`` are both
    false)."""
    if not math.isfinite(value):
        raise invalid_field(path, "must be a finite number", "NUMBER_INVALID")
    return value


@overload
def optional_enum(enum: type[E], value: int, path: str) -> E | None: ...
@overload
def optional_enum(enum: Any, value: int, path: str) -> int | None: ...
def optional_enum(enum: Any, value: int, path: str) -> Any:
    """A caller's enum number, checked: 0 (unset) is None; a number the enum does not
    define is INVALID_ARGUMENT ``ENUM_INVALID``. ``enum`` is a domain ``IntEnum`` (the
    member is returned) or a generated proto enum (the number is returned)."""
    if value == 0:
        return None
    if isinstance(enum, type) and issubclass(enum, IntEnum):
        try:
            return enum(value)
        except ValueError:
            raise invalid_field(path, "is not a known value", "ENUM_INVALID") from None
    if value not in enum.DESCRIPTOR.values_by_number:
        raise invalid_field(path, "is not a known value", "ENUM_INVALID")
    return value


@overload
def required_enum(enum: type[E], value: int, path: str) -> E: ...
@overload
def required_enum(enum: Any, value: int, path: str) -> int: ...
def required_enum(enum: Any, value: int, path: str) -> Any:
    """Like ``optional_enum``, and 0 (unset) is INVALID_ARGUMENT ``REQUIRED_FIELD_MISSING``."""
    found = optional_enum(enum, value, path)
    if found is None:
        raise invalid_field(path, "is required", "REQUIRED_FIELD_MISSING")
    return found


def parse_id(value: str, path: str) -> uuid.UUID:
    """A resource id from a request, or INVALID_ARGUMENT ``ID_INVALID`` naming the field."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{path} is not a valid id",
            reason="ID_INVALID",
            field_violations=[FieldViolation(path, "must be a UUID")],
        ) from None
