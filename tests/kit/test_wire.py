"""Wire helpers: timestamps agree with protobuf's own conversion; bad ids name the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from tenpo.kit.errors import InvalidArgument
from tenpo.kit.wire import parse_id, timestamp

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
