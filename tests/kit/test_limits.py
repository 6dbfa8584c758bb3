"""The limits a field's contract declares (``tenpo.common.v1.limits``): read from the real
contract, checked on set values only, the offending field named as a client writes it."""

from __future__ import annotations

import pytest

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.kit import limits
from tenpo.kit.errors import InvalidArgument
from tenpo.order.v1 import order_service_pb2 as order_api
from tenpo.order.v1 import resources_pb2 as order_resources


def _refusal(message: object, *, json_names: bool = True) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        limits.check(message, json_names=json_names)
    return raised.value


def test_declared_limits_are_read_from_the_contract() -> None:
    sku = limits.declared(cart_api.AddLineItemRequest, "sku")
    assert (sku.max_length, sku.reason) == (64, "SKU_INVALID")
    quantity = limits.declared(cart_api.AddLineItemRequest, "quantity")
    assert (quantity.minimum, quantity.maximum) == (0, 10)
    with pytest.raises(LookupError):
        limits.declared(cart_api.AddLineItemRequest, "etag")


def test_a_value_past_its_limit_is_refused_with_the_declared_reason_and_field() -> None:
    limits.check(cart_api.AddLineItemRequest(sku="A" * 64, quantity=10))
    limits.check(cart_api.AddLineItemRequest())  # unset values are not bounded
    refused = _refusal(cart_api.AddLineItemRequest(sku="A" * 65))
    assert refused.reason == "SKU_INVALID"
    assert [v.field for v in refused.field_violations] == ["sku"]
    assert _refusal(cart_api.AddLineItemRequest(quantity=11)).reason == "QUANTITY_INVALID"
    assert _refusal(cart_api.AddLineItemRequest(quantity=-1)).field_violations[0].field == (
        "quantity"
    )


def test_patterns_match_the_whole_text() -> None:
    limits.check(cart_api.ApplyPromotionCodeRequest(code=" winter10 "))
    limits.check(cart_api.ApplyPromotionCodeRequest(code="ＷＩＮＴＥＲ１０"))  # full-width, NFKC
    for code in ("W", "WINTER!", "W" * 33, "WINTER10\n?"):
        refused = _refusal(cart_api.ApplyPromotionCodeRequest(code=code))
        assert refused.reason == "CODE_INVALID", code


def test_nested_and_repeated_fields_are_named_by_their_path() -> None:
    line = order_resources.FulfillmentLine
    request = order_api.ReturnOrderLinesRequest(lines=[line(sku="A", quantity=1)] * 100)
    limits.check(request)
    too_many = order_api.ReturnOrderLinesRequest(lines=[line(sku="A", quantity=1)] * 101)
    assert _refusal(too_many).field_violations[0].field == "lines"
    long_sku = order_api.ReturnOrderLinesRequest(lines=[line(sku="A"), line(sku="B" * 65)])
    assert _refusal(long_sku).field_violations[0].field == "lines[1].sku"
    upper_case = order_api.ShipFulfillmentRequest(tracking_number="AB-1", carrier="Yamato")
    refused = _refusal(upper_case, json_names=False)
    assert (refused.reason, refused.field_violations[0].field) == ("SHIPMENT_INVALID", "carrier")
    tracking = order_api.ShipFulfillmentRequest(carrier="yamato", tracking_number="x" * 65)
    assert _refusal(tracking).field_violations[0].field == "trackingNumber"
