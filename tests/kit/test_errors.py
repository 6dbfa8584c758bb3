"""Domain errors → google.rpc.Status, and event subjects derived from proto names."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from tenpo.kit.db import subject_for
from tenpo.kit.errors import Aborted, FieldViolation, InvalidArgument, require_fields
from tenpo.kit.grpc_errors import internal_status, status_code, to_rpc_status


def test_status_carries_error_info_and_bad_request() -> None:
    error = InvalidArgument(
        "bad line",
        reason="QUANTITY_INVALID",
        metadata={"sku": "A-1"},
        field_violations=[FieldViolation("lines[0].quantity", "must be at least 1")],
    )
    status = to_rpc_status(error)
    assert status.code == code_pb2.INVALID_ARGUMENT
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "QUANTITY_INVALID",
        "tenpo.dev",
        {"sku": "A-1"},
    )
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "lines[0].quantity"


def test_codes_per_error_class() -> None:
    assert status_code(Aborted("stale", reason="ETAG_MISMATCH")) is grpc.StatusCode.ABORTED
    assert to_rpc_status(Aborted("stale", reason="ETAG_MISMATCH")).code == code_pb2.ABORTED


def test_internal_status_reveals_only_the_trace_id() -> None:
    status = internal_status("0123456789abcdef0123456789abcdef")
    assert status.code == code_pb2.INTERNAL
    assert status.message == "internal error (trace id 0123456789abcdef0123456789abcdef)"


def test_require_fields_names_every_missing_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        require_fields(sku="A-1", location_id="", quantity=0)
    assert caught.value.reason == "REQUIRED_FIELD_MISSING"
    assert [v.field for v in caught.value.field_violations] == ["location_id", "quantity"]


def test_event_subjects_follow_the_proto_package() -> None:
    assert subject_for("tenpo.catalog.v1.ProductPublished") == "tenpo.catalog.product_published"
    assert subject_for("tenpo.inventory.v1.OutOfStock") == "tenpo.inventory.out_of_stock"
    assert subject_for("google.protobuf.StringValue", "kit") == "tenpo.kit.string_value"
    with pytest.raises(ValueError, match="owning service"):
        subject_for("google.protobuf.StringValue")
