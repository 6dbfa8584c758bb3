"""Wire helpers every service's proto ⇄ domain translation shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from tenpo.kit.errors import FieldViolation, InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp (None stays unset). Built from the offset to the epoch, about
    three times cheaper than ``Timestamp.FromDatetime``; a naive value is local time."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone(UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


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
