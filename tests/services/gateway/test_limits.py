"""The limits the contract declares (``tenpo.common.v1.limits``) are stated in the OpenAPI
document and enforced at their boundary: every declaration of the real contract reachable
from an HTTP route, generically, and through running gateways in front of the real cart,
catalog and inventory, with the numbers read from the document they serve."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.catalog import domain as catalog
from services.gateway.descriptors import load_schema
from services.gateway.http import MAX_QUERY_FIELDS
from services.gateway.openapi import OpenApiBuilder
from services.gateway.routes import build_route
from services.order.domain.fulfilments import MAX_CARRIER, MAX_TRACKING
from services.order.domain.orders import MAX_CANCEL_REASON
from services.order.domain.returns import MAX_RETURN_LINES
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import resources_pb2 as catalog_resources
from tenpo.kit import limits
from tenpo.kit.errors import InvalidArgument
from tenpo.order.v1 import order_service_pb2 as order_api
from tests.services.conftest import gateway_channel
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, SeededCatalog

#: Texts tried, in order, for a value that satisfies a pattern at a given length.
_ALPHABET = ("A", "a", "1", "x-")
Step = tuple[Any, bool]  # a field on the way, and whether its value is an item of a list


def _routes() -> list[Any]:
    schema = load_schema()
    return [
        build_route(method, binding)
        for method in schema.http_methods()
        if not (method.client_streaming or method.server_streaming)
        for binding in method.bindings
    ]


def _limited(descriptor: Any, trail: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(fields from the request to it, field) of every limited field below ``descriptor``."""
    for field in descriptor.fields:
        if any(step is field for step in trail):
            continue
        if limits.of_field(field) is not None:
            yield (*trail, field), field
        nested = field.message_type
        ours = nested is not None and nested.full_name.startswith("tenpo.")
        if ours and not nested.GetOptions().map_entry:
            yield from _limited(nested, (*trail, field))


def _leaf(request: Any, trail: tuple[Any, ...]) -> Any:
    """The message holding the last field of ``trail`` (lists get one item on the way)."""
    message = request
    for field in trail[:-1]:
        message = getattr(message, field.name)
        message = message.add() if field.is_repeated else message
    return message


def _text(declared: limits.Limits, length: int) -> str | None:
    for unit in _ALPHABET:
        text = (unit * length)[:length]
        if declared.matches(text):
            return text
    return None


def _cases(declared: limits.Limits, field: Any) -> Iterator[tuple[str, Any, bool]]:
    """(what, value, accepted) at each declared boundary and just past it."""
    if declared.max_items is not None:
        item = _text(declared, 1) if field.type == field.TYPE_STRING else None
        yield "maxItems", [item] * declared.max_items, True
        yield "maxItems", [item] * (declared.max_items + 1), False
    if field.is_repeated:
        return
    if declared.max_length is not None:
        yield "maxLength", _text(declared, declared.max_length), True
        yield "maxLength", "A" * (declared.max_length + 1), False
    if declared.pattern is not None:
        yield "pattern", _text(declared, 2), True
        yield "pattern", "!?", False
    for bound, step in ((declared.minimum, -1), (declared.maximum, 1)):
        if bound is not None:
            # 0 is proto3's unset value: not bounded here (REQUIRED says it must be set).
            if bound != 0:
                yield "bound", bound, True
            if bound + step != 0:
                yield "bound", bound + step, False


def _assign(message: Any, field: Any, value: Any) -> None:
    if not field.is_repeated:
        setattr(message, field.name, value)
    elif field.message_type is not None:
        for _ in value:
            getattr(message, field.name).add()
    else:
        getattr(message, field.name).extend(value)


def _stated(document: dict[str, Any], operation: str, trail: tuple[Any, ...], field: Any) -> Any:
    """The schema the document gives ``field``: its message's property, or the operation's
    query parameter when the message is read from the query string."""
    found = document["components"]["schemas"].get(field.containing_type.full_name)
    if found is not None:
        return found["properties"][field.json_name]
    name = ".".join(f.json_name for f in trail)
    for item in document["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == operation:
                return next(p["schema"] for p in op["parameters"] if p["name"] == name)
    raise AssertionError(f"{operation}: {name} is not documented")


def _parameter(document: dict[str, Any], path: str, name: str) -> Any:
    found = document["paths"][path]["get"]["parameters"]
    return next(p["schema"] for p in found if p["name"] == name)


def test_every_declared_limit_is_in_the_document_and_holds_at_its_boundary() -> None:
    routes = _routes()
    document = OpenApiBuilder(load_schema(), title="t", version="v1").build(routes)
    checked = set()
    for route in routes:
        request_class = route.method.request_class()
        for trail, field in _limited(request_class.DESCRIPTOR):
            declared = limits.of_field(field)
            assert declared is not None
            # The document states the declaration on the field's own schema.
            stated = _stated(document, route.method.name, trail, field)
            item = stated.get("items", stated) if field.is_repeated else stated
            if declared.max_items is not None:
                assert stated["maxItems"] == declared.max_items, field.full_name
            if declared.max_length is not None:
                assert item["maxLength"] == declared.max_length, field.full_name
            if declared.pattern is not None:
                assert declared.pattern.startswith("^") and declared.pattern.endswith("$")
                assert item["pattern"] == declared.pattern, field.full_name
            if field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
                assert item.get("minimum") == declared.minimum, field.full_name
                assert item.get("maximum") == declared.maximum, field.full_name
            # The gateway's check (build_request runs it) at the boundary and past it.
            path = ".".join(f.json_name + ("[0]" if f.is_repeated else "") for f in trail[:-1])
            expected = f"{path}.{field.json_name}" if path else field.json_name
            for what, value, accepted in _cases(declared, field):
                assert value is not None, (field.full_name, what)
                request = request_class()
                _assign(_leaf(request, trail), field, value)
                if accepted:
                    limits.check(request)
                    continue
                with pytest.raises(InvalidArgument) as refused:
                    limits.check(request)
                assert refused.value.reason == declared.reason
                named = refused.value.field_violations[0].field
                assert named == expected or named.startswith(f"{expected}["), (named, expected)
            checked.add(field.full_name)
    # The commerce operations and the catalog and inventory reads declare theirs.
    assert {
        "tenpo.cart.v1.AddLineItemRequest.sku",
        "tenpo.cart.v1.AddLineItemRequest.quantity",
        "tenpo.cart.v1.ApplyPromotionCodeRequest.code",
        "tenpo.cart.v1.LineItem.quantity",
        "tenpo.order.v1.RequestReturnRequest.reason",
        "tenpo.order.v1.ReturnOrderLinesRequest.lines",
        "tenpo.order.v1.FulfillmentLine.sku",
        "tenpo.order.v1.ShipFulfillmentRequest.tracking_number",
        "tenpo.catalog.v1.SearchProductsRequest.query",
        "tenpo.inventory.v1.GetAvailabilityRequest.skus",
        "tenpo.catalog.v1.Product.code",
        "tenpo.catalog.v1.Variant.sku",
        "tenpo.catalog.v1.Category.slug",
    } <= checked


def test_the_services_bounds_are_the_declared_ones() -> None:
    """Where a service's domain keeps its own number (domains import no protobuf), it is the
    contract's; the others read the declaration (cart, catalog and inventory use cases)."""
    search = catalog_api.SearchProductsRequest
    assert limits.declared(search, "query").max_length == catalog.MAX_QUERY_LENGTH
    assert limits.declared(search, "category_ids").max_items == catalog.MAX_SEARCH_CATEGORIES
    assert limits.declared(search, "brands").max_items == catalog.MAX_SEARCH_BRANDS
    assert limits.declared(search, "attribute_filters").max_items == catalog.MAX_ATTRIBUTE_FILTERS
    product = catalog_resources.Product
    assert limits.declared(product, "code").pattern == catalog.CODE_PATTERN.pattern
    assert limits.declared(catalog_resources.Variant, "sku").pattern == catalog.SKU_PATTERN.pattern
    assert limits.declared(product, "brand").max_length == catalog.MAX_TEXT
    assert limits.declared(product, "category_ids").max_items == catalog.MAX_CATEGORIES_PER_PRODUCT
    assert limits.declared(product, "media").max_items == catalog.MAX_MEDIA
    assert limits.declared(product, "variants").max_items == catalog.MAX_VARIANTS
    for owner in (product, catalog_resources.Variant):
        assert limits.declared(owner, "attributes").max_items == catalog.MAX_ATTRIBUTES
    slug = limits.declared(catalog_resources.Category, "slug").pattern
    assert slug == catalog.SLUG_PATTERN.pattern
    key = limits.declared(catalog_resources.AttributeDefinition, "key").pattern
    assert key == catalog.KEY_PATTERN.pattern
    ship = order_api.ShipFulfillmentRequest
    assert limits.declared(ship, "carrier").max_length == MAX_CARRIER
    assert limits.declared(ship, "tracking_number").max_length == MAX_TRACKING
    assert limits.declared(order_api.CancelOrderRequest, "reason").max_length == MAX_CANCEL_REASON
    for request in (order_api.ReturnOrderLinesRequest, order_api.RequestReturnRequest):
        assert limits.declared(request, "lines").max_items == MAX_RETURN_LINES


# --- through running gateways, with the numbers the served document states ----------------


def _violation(response: Any) -> tuple[str, str]:
    """(reason, first field named) of a 400."""
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    reason = next(d["reason"] for d in details if "reason" in d)
    fields = [v["field"] for d in details for v in d.get("fieldViolations", [])]
    return reason, fields[0] if fields else ""


def _properties(document: dict[str, Any], message: str) -> dict[str, Any]:
    return document["components"]["schemas"][message]["properties"]  # type: ignore[no-any-return]


async def test_the_cart_routes_refuse_past_the_documented_limits_and_accept_them(
    cart_target: str, seeded_catalog: SeededCatalog, start_gateway: GatewayFactory
) -> None:
    listed = await seeded_catalog.stub.ListProducts(
        catalog_api.ListProductsRequest(page_size=5), metadata=gateway_channel("WEB")
    )
    sku = listed.products[0].variants[0].sku
    key = {"x-api-key": WEB_KEY}
    async with start_gateway(targets={"cart": cart_target, "catalog": seeded_catalog.target}) as gw:
        document = (await gw.client.get("/openapi.json")).json()
        add = _properties(document, "tenpo.cart.v1.AddLineItemRequest")
        max_sku, max_quantity = add["sku"]["maxLength"], add["quantity"]["maximum"]
        min_quantity = add["quantity"]["minimum"]
        code_pattern = _properties(document, "tenpo.cart.v1.ApplyPromotionCodeRequest")["code"]
        assert (max_sku, min_quantity, max_quantity) == (64, 0, 10)
        created = await gw.client.post(
            "/v1/carts", json={"requestId": str(uuid.uuid4())}, headers=key
        )
        assert created.status_code == 200, created.text
        cart_id, token = created.json()["cart"]["id"], created.json()["cartToken"]

        async def add_line(**body: Any) -> Any:
            body = {"cartToken": token, "requestId": str(uuid.uuid4()), **body}
            return await gw.client.post(f"/v1/carts/{cart_id}/lineItems", json=body, headers=key)

        too_long = await add_line(sku="A" * (max_sku + 1))
        assert _violation(too_long) == ("SKU_INVALID", "sku")
        # Refused by the gateway itself (the cart words it otherwise), with the cart's reason.
        assert too_long.json()["error"]["message"] == f"sku has at most {max_sku} characters"
        # At the bound the SKU is read (and is no SKU of this catalog).
        at_bound = await add_line(sku="A" * max_sku)
        assert _violation(at_bound) == ("SKU_NOT_OFFERED", "sku")
        assert _violation(await add_line(sku=sku, quantity=max_quantity + 1)) == (
            "QUANTITY_INVALID",
            "quantity",
        )
        assert _violation(await add_line(sku=sku, quantity=min_quantity - 1)) == (
            "QUANTITY_INVALID",
            "quantity",
        )
        added = await add_line(sku=sku, quantity=max_quantity)
        assert added.status_code == 200, added.text
        assert added.json()["lineItems"][0]["quantity"] == max_quantity

        async def apply(code: str) -> Any:
            body = {"cartToken": token, "code": code, "requestId": str(uuid.uuid4())}
            url = f"/v1/carts/{cart_id}:applyPromotionCode"
            return await gw.client.post(url, json=body, headers=key)

        assert "pattern" in code_pattern
        assert _violation(await apply("W" * 33)) == ("CODE_INVALID", "code")
        assert _violation(await apply("WIN!")) == ("CODE_INVALID", "code")
        # 32 characters, in full width too, are codes: this cart knows none of them.
        for code in ("W" * 32, "ｗｉｎｔｅｒ１０"):
            reason, _ = _violation(await apply(code))
            assert reason != "CODE_INVALID", code


async def test_the_catalog_and_inventory_reads_refuse_past_the_documented_limits(
    seeded_catalog: SeededCatalog, inventory_target: str, start_gateway: GatewayFactory
) -> None:
    key = {"x-api-key": WEB_KEY}
    targets = {"catalog": seeded_catalog.target, "inventory": inventory_target}
    async with start_gateway(targets=targets) as gw:
        document = (await gw.client.get("/openapi.json")).json()
        search = _properties(document, "tenpo.catalog.v1.SearchProductsRequest")
        max_query, max_brands = search["query"]["maxLength"], search["brands"]["maxItems"]
        max_batch = _parameter(document, "/v1/variants:batchGet", "skus")["maxItems"]
        max_skus = _parameter(document, "/v1/availability", "skus")["maxItems"]

        async def search_for(**body: Any) -> Any:
            return await gw.client.post("/v1/products:search", json=body, headers=key)

        too_long = await search_for(query="靴" * (max_query + 1))
        assert _violation(too_long) == ("QUERY_TOO_LONG", "query")
        assert too_long.json()["error"]["message"] == f"query has at most {max_query} characters"
        assert (await search_for(query="靴" * max_query)).status_code == 200
        brands = [f"brand-{i}" for i in range(max_brands + 1)]
        assert _violation(await search_for(brands=brands)) == ("TOO_MANY_ITEMS", "brands")
        assert (await search_for(brands=brands[:max_brands])).status_code == 200

        # Over the query string 201 values are past the gateway's cap on query fields
        # (MAX_QUERY_FIELDS, 200) before they are past the declared 200: still a 400.
        assert MAX_QUERY_FIELDS == max_batch == max_skus
        skus = [("skus", f"SKU-{i}") for i in range(max_skus + 1)]
        for path in ("/v1/variants:batchGet", "/v1/availability"):
            refused = await gw.client.get(path, params=skus, headers=key)
            assert _violation(refused) == ("QUERY_INVALID", ""), path
            found = await gw.client.get(path, params=skus[:max_skus], headers=key)
            assert found.status_code == 200, found.text
