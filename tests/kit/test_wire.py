"""Wire helpers: timestamps agree with protobuf's own conversion; bad ids name the field."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from tenpo.common.v1 import common_pb2
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.wire import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    finite,
    from_duration,
    from_timestamp,
    optional_enum,
    parse_id,
    required_enum,
    timestamp,
)

ZONES = [UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=5))]


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(ZONES),
    )
)
def test_timestamp_matches_protobufs_own_conversion(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value.astimezone(UTC))
    assert timestamp(value) == expected


def test_timestamp_of_nothing_is_nothing() -> None:
    assert timestamp(None) is None


def test_a_bad_id_names_the_field() -> None:
    assert parse_id(str(uuid.UUID(int=7)), "id") == uuid.UUID(int=7)
    with pytest.raises(InvalidArgument) as raised:
        parse_id("not-a-uuid", "reservation.id")
    assert raised.value.reason == "ID_INVALID"
    assert raised.value.field_violations[0].field == "reservation.id"


def _violation(raised: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str]:
    return raised.value.reason, raised.value.field_violations[0].field


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**63 - 1, 0), (-(2**63), 0), (MAX_TIMESTAMP_SECONDS + 1, 0), (0, -1), (0, 10**9)],
)
def test_a_timestamp_out_of_range_names_the_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "at_time")
    assert _violation(raised) == ("TIMESTAMP_INVALID", "at_time")


@given(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
    ).map(lambda value: value.replace(tzinfo=UTC))
)
def test_from_timestamp_inverts_timestamp_over_the_whole_range(value: datetime) -> None:
    message = timestamp(value)
    assert message is not None
    assert from_timestamp(message, "t") == value


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (2**63 - 1, 0),
        (-(2**63), 0),
        (MAX_DURATION_SECONDS + 1, 0),
        (1, 2_000_000_000),
        (1, -1),
        (-1, 1),
    ],
)
def test_a_duration_out_of_range_or_denormalized_names_the_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        from_duration(Duration(seconds=seconds, nanos=nanos), "ttl")
    assert _violation(raised) == ("DURATION_INVALID", "ttl")


@given(st.integers(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS), st.integers(0, 999_999_999))
def test_from_duration_agrees_with_protobuf_within_range(seconds: int, nanos: int) -> None:
    nanos = -nanos if seconds < 0 else nanos
    message = Duration(seconds=seconds, nanos=nanos)
    expected = message.ToTimedelta()
    assert abs(from_duration(message, "d") - expected) <= timedelta(microseconds=1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgument) as raised:
        finite(value, "radius_km")
    assert _violation(raised) == ("NUMBER_INVALID", "radius_km")
    assert finite(2.5, "radius_km") == 2.5


class Colour(IntEnum):
    RED = 1
    BLUE = 2


def test_enums_are_checked_against_domain_and_proto_enums() -> None:
    assert optional_enum(Colour, 0, "c") is None
    assert required_enum(Colour, 2, "c") is Colour.BLUE
    assert required_enum(common_pb2.Channel, common_pb2.CHANNEL_KIOSK, "ch") == (
        common_pb2.CHANNEL_KIOSK
    )
    for enum in (Colour, common_pb2.Channel):
        with pytest.raises(InvalidArgument) as raised:
            optional_enum(enum, 999, "lines[0].kind")
        assert _violation(raised) == ("ENUM_INVALID", "lines[0].kind")
        with pytest.raises(InvalidArgument) as raised:
            required_enum(enum, 0, "kind")
        assert _violation(raised) == ("REQUIRED_FIELD_MISSING", "kind")
