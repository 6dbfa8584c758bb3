"""Page tokens and page sizes of tenpo.kit.pagination."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.pagination import MAX_TOKEN_LENGTH, PageTokenCodec, page_size

SECRET = "a-test-secret-that-is-long-enough-1234"
QUERY = {"parent": "stores/st_1", "filter": "status = OPEN", "order_by": "create_time desc"}
CURSOR = {"create_time": "2025-06-01T09:00:00Z", "id": "ord_internal_4711"}


@pytest.fixture
def codec() -> PageTokenCodec:
    return PageTokenCodec(SECRET)


def _assert_invalid(codec: PageTokenCodec, token: str, query: Any = QUERY) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        codec.decode(token, query=query)
    assert raised.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in raised.value.field_violations] == ["page_token"]
    return raised.value


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip(codec: PageTokenCodec) -> None:
    token = codec.encode(CURSOR, query=QUERY)
    assert codec.decode(token, query=QUERY) == CURSOR
    # The order of the query's keys is not part of its identity.
    assert codec.decode(token, query=dict(reversed(QUERY.items()))) == CURSOR


def test_round_trip_with_a_string_query(codec: PageTokenCodec) -> None:
    token = codec.encode({"offset": 100}, query="parent=stores/st_1|filter=")
    assert codec.decode(token, query="parent=stores/st_1|filter=") == {"offset": 100}


def test_a_second_codec_with_the_same_secret_reads_the_token(codec: PageTokenCodec) -> None:
    # Another replica of the service, or the same one after a restart.
    token = codec.encode(CURSOR, query=QUERY)
    assert PageTokenCodec(SECRET.encode()).decode(token, query=QUERY) == CURSOR


def test_empty_token_is_the_first_page(codec: PageTokenCodec) -> None:
    assert codec.decode("", query=QUERY) == {}


def test_token_is_url_safe_and_does_not_show_the_cursor(codec: PageTokenCodec) -> None:
    token = codec.encode(CURSOR, query=QUERY)
    assert token.replace("-", "").replace("_", "").isalnum()
    assert b"ord_internal_4711" not in _raw(token)
    assert b"create_time" not in _raw(token)


@pytest.mark.parametrize("position", [0, 1, 10, -17, -1])
def test_a_flipped_byte_is_rejected(codec: PageTokenCodec, position: int) -> None:
    raw = bytearray(_raw(codec.encode(CURSOR, query=QUERY)))
    raw[position] ^= 0x01
    _assert_invalid(codec, _token(bytes(raw)))


def test_a_token_sealed_with_another_secret_is_rejected(codec: PageTokenCodec) -> None:
    token = PageTokenCodec("some-other-secret-also-long-enough-9876").encode(CURSOR, query=QUERY)
    _assert_invalid(codec, token)


@pytest.mark.parametrize(
    "other_query",
    [
        {**QUERY, "filter": "status = CANCELLED"},
        {**QUERY, "order_by": "create_time asc"},
        {k: v for k, v in QUERY.items() if k != "filter"},
        "",
    ],
)
def test_a_token_issued_for_another_query_is_rejected(
    codec: PageTokenCodec, other_query: Any
) -> None:
    error = _assert_invalid(codec, codec.encode(CURSOR, query=QUERY), query=other_query)
    assert error.field_violations == (
        FieldViolation("page_token", "issued for a different query (filter or order changed)"),
    )


@pytest.mark.parametrize(
    "token",
    ["not a token", "abc", "A" * (MAX_TOKEN_LENGTH + 1), "AQ", "====", "a+b/c", "ÿÿÿÿ"],
)
def test_garbage_is_rejected(codec: PageTokenCodec, token: str) -> None:
    _assert_invalid(codec, token)


def test_a_non_canonical_spelling_is_rejected(codec: PageTokenCodec) -> None:
    # When the length is not a multiple of 4, the last character has unused low bits; a
    # spelling that differs only there decodes to the same bytes and must still be refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = next(t for t in (codec.encode({"n": n}) for n in range(10)) if len(t) % 4 in (2, 3))
    respelled = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert _raw(respelled) == _raw(token)
    _assert_invalid(codec, respelled, query="")
    _assert_invalid(codec, token + "=" * (-len(token) % 4), query="")


def test_cursors_too_large_for_a_token_are_refused_when_encoding(codec: PageTokenCodec) -> None:
    with pytest.raises(ValueError, match="longer than"):
        codec.encode({"blob": "x" * MAX_TOKEN_LENGTH})


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        PageTokenCodec(b"")


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    cursor=st.dictionaries(st.text(max_size=10), _json_scalars, max_size=5),
    query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)
def test_any_small_json_cursor_round_trips(cursor: dict[str, Any], query: dict[str, str]) -> None:
    codec = PageTokenCodec(SECRET)
    assert codec.decode(codec.encode(cursor, query=query), query=query) == cursor


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(0, 50), (1, 1), (50, 50), (499, 499), (500, 500), (501, 500), (10**9, 500)],
)
def test_page_size(requested: int, expected: int) -> None:
    assert page_size(requested) == expected


def test_page_size_with_custom_bounds() -> None:
    assert page_size(0, default=20, maximum=100) == 20
    assert page_size(101, default=20, maximum=100) == 100
    assert page_size(0, default=200, maximum=100) == 100


@pytest.mark.parametrize("requested", [-1, -500])
def test_negative_page_size_is_invalid(requested: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        page_size(requested)
    assert raised.value.reason == "INVALID_PAGE_SIZE"
    assert [v.field for v in raised.value.field_violations] == ["page_size"]


def test_keyset_pages_carry_the_last_rows_position() -> None:
    from datetime import UTC, datetime

    codec = PageTokenCodec("keyset-secret")
    rows = [(datetime(2026, 11, 23, 12, i, tzinfo=UTC), f"id-{i}") for i in range(5)]
    page, token = codec.keyset_page(rows, 3, lambda r: r, query="q")
    assert page == rows[:3]
    assert codec.decode_keyset(token, query="q") == rows[2]
    last, none = codec.keyset_page(rows[:2], 3, lambda r: r, query="q")
    assert (list(last), none) == (rows[:2], "")
    assert codec.decode_keyset("", query="q") is None
