"""What the OpenAPI schema says beyond types: field_behavior and field_info read generically
from any descriptor (a test-only proto here, so the test does not depend on which protos are
annotated), and the naming convention applied to the real contract."""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2, field_info_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from services.gateway.descriptors import HttpBinding, Method, Schema, load_schema
from services.gateway.fieldrules import NO_NUL
from services.gateway.openapi import OpenApiBuilder
from services.gateway.routes import build_route

F = descriptor_pb2.FieldDescriptorProto
PACKAGE = "tenpo.testonly.fieldrules.v1"


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    *,
    behaviors: tuple[int, ...] = (),
    info_format: int | None = None,
    kind: int = F.TYPE_STRING,
    repeated: bool = False,
) -> None:
    parts = name.split("_")
    field = message.field.add(
        name=name,
        number=len(message.field) + 1,
        type=kind,
        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
        json_name=parts[0] + "".join(p.capitalize() for p in parts[1:]),
    )
    field.options.Extensions[field_behavior_pb2.field_behavior].extend(behaviors)
    if info_format is not None:
        field.options.Extensions[field_info_pb2.field_info].format = info_format  # type: ignore[assignment]


def _test_schema() -> Schema:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("tests/gateway/fieldrules.proto")
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name="tests/gateway/fieldrules.proto",
            package=PACKAGE,
            syntax="proto3",
            dependency=["google/api/field_behavior.proto", "google/api/field_info.proto"],
        )
        widget = file.message_type.add(name="Widget")
        _field(
            widget,
            "id",
            behaviors=(field_behavior_pb2.OUTPUT_ONLY,),
            info_format=field_info_pb2.FieldInfo.UUID4,
        )
        _field(widget, "title", behaviors=(field_behavior_pb2.REQUIRED,))
        _field(widget, "secret", behaviors=(field_behavior_pb2.INPUT_ONLY,))
        _field(widget, "code", behaviors=(field_behavior_pb2.IMMUTABLE,))
        _field(widget, "peer", info_format=field_info_pb2.FieldInfo.IPV4_OR_IPV6)
        update = file.message_type.add(name="UpdateWidgetRequest")
        update.field.add(
            name="widget",
            number=1,
            type=F.TYPE_MESSAGE,
            type_name=f".{PACKAGE}.Widget",
            label=F.LABEL_OPTIONAL,
            json_name="widget",
        )
        update.field.add(
            name="update_mask",
            number=2,
            type=F.TYPE_MESSAGE,
            type_name=".google.protobuf.FieldMask",
            label=F.LABEL_OPTIONAL,
            json_name="updateMask",
        )
        file.dependency.append("google/protobuf/field_mask.proto")
        request = file.message_type.add(name="BatchGetWidgetsRequest")
        _field(request, "ids", behaviors=(field_behavior_pb2.REQUIRED,), repeated=True)
        _field(request, "widget_id")
        _field(request, "page_size", kind=F.TYPE_INT32)
        pool.Add(file)
    return Schema(pool=pool)


def _components(schema: Schema, *names: str) -> dict[str, Any]:
    builder = OpenApiBuilder(schema, title="t", version="v1", max_page_size=50)
    for name in names:
        message = schema.message(name)
        assert message is not None
        builder.message_schema(message)
    return builder.build([])["components"]["schemas"]  # type: ignore[no-any-return]


def test_field_behavior_and_field_info_are_read_from_any_descriptor() -> None:
    schemas = _components(_test_schema(), f"{PACKAGE}.Widget", f"{PACKAGE}.BatchGetWidgetsRequest")
    widget = schemas[f"{PACKAGE}.Widget"]
    assert widget["required"] == ["title"]
    properties = widget["properties"]
    assert properties["id"]["readOnly"] is True
    assert properties["id"]["format"] == "uuid"
    assert properties["secret"]["writeOnly"] is True
    assert "Immutable" in properties["code"]["description"]
    assert properties["peer"]["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}]
    request = schemas[f"{PACKAGE}.BatchGetWidgetsRequest"]
    assert request["required"] == ["ids"]
    # Ids take the format of the resource they name (BatchGetWidgets → Widget).
    assert request["properties"]["ids"]["items"]["format"] == "uuid"
    assert request["properties"]["widgetId"]["format"] == "uuid"
    assert request["properties"]["pageSize"] | {} == {
        "type": "integer",
        "format": "int32",
        "minimum": 0,
        "maximum": 50,
    }
    # What every service enforces: a required text is not empty, a required list has an
    # item, and no text holds a NUL (formatted ids are checked by their format instead).
    assert properties["title"]["minLength"] == 1
    assert properties["title"]["pattern"] == NO_NUL
    assert "minLength" not in properties["code"] and properties["code"]["pattern"] == NO_NUL
    assert "pattern" not in properties["id"]
    assert request["properties"]["ids"]["minItems"] == 1
    assert "minLength" not in request["properties"]["ids"]["items"]


def test_update_bodies_do_not_require_what_creation_does() -> None:
    schema = _test_schema()
    request = schema.message(f"{PACKAGE}.UpdateWidgetRequest")
    widget = schema.message(f"{PACKAGE}.Widget")
    assert request is not None
    assert widget is not None
    method = Method(
        service=f"{PACKAGE}.WidgetService",
        name="UpdateWidget",
        input=request,
        output=widget,
        client_streaming=False,
        server_streaming=False,
        bindings=(),
        comment="",
    )
    route = build_route(method, HttpBinding("PATCH", "/v1/widgets/{widget.id}", "widget", ""))
    builder = OpenApiBuilder(schema, title="t", version="v1")
    builder.message_schema(widget)  # the resource itself is also in the document
    document = builder.build([route])
    body = document["paths"]["/v1/widgets/{id}"]["patch"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"]
    assert ref == f"#/components/schemas/{PACKAGE}.Widget_Update"
    schemas = document["components"]["schemas"]
    assert "required" not in schemas[f"{PACKAGE}.Widget_Update"]
    assert schemas[f"{PACKAGE}.Widget"]["required"] == ["title"]
    assert (
        schemas[f"{PACKAGE}.Widget_Update"]["properties"]
        == schemas[f"{PACKAGE}.Widget"]["properties"]
    )


def test_the_real_contract_states_its_limits() -> None:
    schema = load_schema()
    routes = [
        build_route(method, binding)
        for method in schema.http_methods()
        if not (method.client_streaming or method.server_streaming)
        for binding in method.bindings
    ]
    document = OpenApiBuilder(schema, title="t", version="v1", max_page_size=100).build(routes)
    paths = document["paths"]

    def parameter(path: str, verb: str, name: str) -> dict[str, Any]:
        found = [p for p in paths[path][verb]["parameters"] if p["name"] == name]
        assert found, (path, verb, name)
        return found[0]

    assert parameter("/v1/products/{id}", "get", "id")["schema"]["format"] == "uuid"
    assert parameter("/v1/products", "get", "pageSize")["schema"]["minimum"] == 0
    assert parameter("/v1/products", "get", "pageSize")["schema"]["maximum"] == 100
    assert parameter("/v1/products", "get", "categoryId")["schema"]["format"] == "uuid"
    # Locations are named by slugs, not UUIDs: no format is claimed for them.
    assert "format" not in parameter("/v1/locations/{id}", "get", "id")["schema"]
    # 'Customer id, or "me".'
    assert parameter("/v1/customers/{id}", "get", "id")["schema"]["anyOf"] == [
        {"format": "uuid"},
        {"const": "me"},
    ]
    schemas = document["components"]["schemas"]
    assert schemas["tenpo.catalog.v1.Category"]["properties"]["parentId"]["format"] == "uuid"
    assert (
        schemas["tenpo.catalog.v1.SetPricesRequest"]["properties"]["requestId"]["maxLength"] == 128
    )
