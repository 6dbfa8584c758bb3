"""update_mask with AIP-134's meaning: explicit paths, "*" and the implied mask."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2, type_pb2

from tenpo.kit.errors import InvalidArgument
from tenpo.kit.fieldmask import update_paths

UPDATABLE = ("name", "fields", "syntax")


def test_explicit_paths_change_exactly_those_fields_in_a_stable_order() -> None:
    resource = type_pb2.Type(name="x")
    assert update_paths(["syntax", "name"], resource, UPDATABLE) == ["name", "syntax"]


def test_star_replaces_every_updatable_field() -> None:
    assert update_paths(["*"], type_pb2.Type(), UPDATABLE) == list(UPDATABLE)


def test_empty_mask_means_the_populated_fields() -> None:
    resource = type_pb2.Type(name="x", syntax=type_pb2.SYNTAX_PROTO3)
    assert update_paths([], resource, UPDATABLE) == ["name", "syntax"]


def test_unknown_paths_are_refused_and_named() -> None:
    with pytest.raises(InvalidArgument) as raised:
        update_paths(["name", "id", "oneofs"], type_pb2.Type(), UPDATABLE)
    assert raised.value.reason == "UPDATE_MASK_INVALID"
    assert [v.description for v in raised.value.field_violations] == [
        "unknown or read-only: id",
        "unknown or read-only: oneofs",
    ]


def test_an_update_that_changes_nothing_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        update_paths([], struct_pb2.Value(), ("string_value",))
    assert raised.value.reason == "UPDATE_MASK_INVALID"


def test_dotted_paths_are_implied_by_their_populated_parent() -> None:
    resource = type_pb2.Type(source_context={"file_name": "a.proto"})
    assert update_paths([], resource, ("source_context.file_name", "name")) == [
        "source_context.file_name"
    ]
