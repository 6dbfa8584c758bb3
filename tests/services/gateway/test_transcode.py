"""Request bodies the gateway cannot transcode are 400s that name the field, never 500s:
deep nesting, unknown enum numbers and names, wrong types; a fuzz over every body route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.descriptors import HttpBinding, load_schema
from services.gateway.routes import Route, build_route
from services.gateway.transcode import MAX_JSON_DEPTH, build_request, check_json_depth
from tenpo.kit.errors import InvalidArgument
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory

SCHEMA = load_schema()
UNREACHABLE = "127.0.0.1:9"  # routes need a target; these requests never reach it


def _route(method_name: str, verb: str, template: str, body: str = "*") -> Route:
    method = SCHEMA.method(method_name)
    assert method is not None
    return build_route(method, HttpBinding(verb, template, body, ""))


SEARCH = _route("tenpo.catalog.v1.CatalogService.SearchProducts", "POST", "/v1/products:search")
CREATE = _route("tenpo.catalog.v1.CatalogService.CreateProduct", "POST", "/v1/products", "product")
SIGN_IN = _route("tenpo.customer.v1.IdentityService.SignIn", "POST", "/v1/identity:signIn")


def _refusal(route: Route, body: bytes) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        build_request(route, {}, [], body, max_page_size=100)
    return raised.value


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000,
        b'{"email":' * 1000,
        b"[" * 200_000,
        b'{"email": "x", "password": ' + b"[{" * 20 + b"]}" * 20 + b"}",
    ],
)
def test_deep_nesting_is_refused_before_parsing(body: bytes) -> None:
    error = _refusal(SIGN_IN, body)
    assert error.reason == "BODY_TOO_DEEP"
    assert error.field_violations[0].field == "body"
    assert error.metadata["max_depth"] == str(MAX_JSON_DEPTH)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[{" * 500 + '\\"'
    check_json_depth(json.dumps({"email": text, "x": [[1]]}).encode(), MAX_JSON_DEPTH)
    message = build_request(SIGN_IN, {}, [], json.dumps({"email": text}).encode(), 100)
    assert message.email == text


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (SEARCH, b'{"sort": 999}', "sort"),
        (SEARCH, b'{"sort": -1}', "sort"),
        (SEARCH, b'{"sort": "SEARCH_SORT_NOPE"}', "sort"),
        (SEARCH, b'{"channel": 12345}', "channel"),
        (SEARCH, b'{"pageSize": 1e400}', "pageSize"),
        (SEARCH, b'{"categoryIds": "not a list"}', "categoryIds"),
        (SEARCH, b'{"attributeFilters": [{}, {"nope": 1}]}', "attributeFilters[1].nope"),
        (SEARCH, b'{"nope": 1}', "nope"),
        (SEARCH, b'{"query": "\\ud800"}', "query"),
        (CREATE, b'{"status": 77}', "product.status"),
        (CREATE, b'{"variants": [{}, {"barcodes": [{"type": 99}]}]}', "product.variants[1]"),
    ],
)
def test_untranscodable_fields_are_named(route: Route, body: bytes, field: str) -> None:
    error = _refusal(route, body)
    assert error.reason == "REQUEST_INVALID"
    assert error.field_violations[0].field.startswith(field), error.field_violations


@pytest.mark.parametrize(
    "body", [b'{"nope": 1}', b'{"attributeFilters": [{}, {"nope": 1}]}', b'{"a.b": 1}']
)
def test_an_unknown_field_is_named_without_the_schema_behind_it(body: bytes) -> None:
    """Found from outside: a body with an unknown field answered protobuf's whole parser
    message, the internal message type and every field it has ("Message type
    \"tenpo.catalog.v1.SearchProductsRequest\" has no field named ... Available Fields"),
    also to a caller the service then refuses (the transcoder runs before the service's
    ownership check). The answer names the field the client wrote, nothing more."""
    error = _refusal(SEARCH, body)
    text = " ".join([str(error), *(v.description for v in error.field_violations)])
    assert "tenpo." not in text and "Available" not in text and "Message type" not in text
    assert error.field_violations[0].description == "is not a field of this request"


# --- fuzz ----------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _value(field: Any, depth: int) -> st.SearchStrategy[Any]:
    """Mostly plausible values for ``field``, sometimes anything at all."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        plausible: st.SearchStrategy[Any] = st.sampled_from(names) | st.integers(-3, 1000)
    elif kind == FieldDescriptor.TYPE_MESSAGE and depth < 4:
        plausible = _document(field.message_type, depth + 1)
    elif kind == FieldDescriptor.TYPE_STRING:
        plausible = st.text(max_size=10)
    elif kind == FieldDescriptor.TYPE_BOOL:
        plausible = st.booleans()
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        plausible = st.floats() | st.sampled_from(["NaN", "Infinity", "1e999"])
    else:
        plausible = st.integers(-(2**65), 2**65) | st.integers(-5, 5).map(str)
    single = plausible | ANY_JSON
    if field.is_repeated and not (
        kind == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
    ):
        return st.lists(single, max_size=3) | single
    return single


def _document(message: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    if message.full_name.startswith("google.protobuf."):
        return st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=2)
    fields = {f.json_name: f for f in message.fields}
    if not fields:
        return st.just({})
    return st.dictionaries(st.sampled_from(sorted(fields)), st.nothing(), max_size=0) | st.lists(
        st.sampled_from(sorted(fields)), max_size=4, unique=True
    ).flatmap(lambda names: st.fixed_dictionaries({n: _value(fields[n], depth) for n in names}))


def _unknown_enum_numbers(message: Any) -> Any:
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_ENUM:
            known = field.enum_type.values_by_number
            yield from (v for v in (value if field.is_repeated else [value]) if v not in known)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = [v for v in value.values() if hasattr(v, "ListFields")]
            else:
                items = value if field.is_repeated else [value]
            for item in items:
                yield from _unknown_enum_numbers(item)


BODY_ROUTES = [
    build_route(method, binding)
    for method in SCHEMA.http_methods()
    if not (method.client_streaming or method.server_streaming)
    for binding in method.bindings
    if binding.body
]


def _body(route: Route) -> st.SearchStrategy[bytes]:
    message = route.method.input
    if route.binding.body == "*":
        document: st.SearchStrategy[Any] = _document(message)
    else:
        document = _value(message.fields_by_name[route.binding.body], 0)
    return (document | ANY_JSON).map(lambda d: json.dumps(d).encode())


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: r.method.name)
def test_fuzzed_bodies_are_transcoded_or_refused_never_crash(route: Route) -> None:
    path_values = {v.name: "x" for v in route.variables}

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(body=_body(route))
    def check(body: bytes) -> None:
        try:
            message = build_request(route, path_values, [], body, max_page_size=100)
        except InvalidArgument as error:
            violations = error.field_violations
        else:
            message.SerializeToString()  # what the gateway sends on must serialize
            assert not list(_unknown_enum_numbers(message))  # only values the enums know
            return
        assert violations
        assert all(v.field for v in violations)

    check()


def test_fuzz_covers_every_body_route() -> None:
    assert len(BODY_ROUTES) >= 10
    assert {"SearchProducts", "SignIn", "CreateProduct"} <= {r.method.name for r in BODY_ROUTES}


# --- over HTTP ---------------------------------------------------------------------------


async def test_bad_bodies_are_400_over_http(start_gateway: GatewayFactory) -> None:
    async with start_gateway(targets={"catalog": UNREACHABLE, "customer": UNREACHABLE}) as gw:
        nested = await gw.client.post(
            "/v1/identity:signIn",
            content=b"[" * 1000,
            headers={"content-type": "application/json"},
        )
        sort = await gw.client.post(
            "/v1/products:search", json={"sort": 999}, headers={"x-api-key": WEB_KEY}
        )
    assert nested.status_code == 400
    info, bad_request = nested.json()["error"]["details"][:2]
    assert info["reason"] == "BODY_TOO_DEEP"
    assert bad_request["fieldViolations"][0]["field"] == "body"
    assert sort.status_code == 400
    details = sort.json()["error"]["details"]
    assert details[0]["reason"] == "REQUEST_INVALID"
    assert details[1]["fieldViolations"] == [
        {"field": "sort", "description": "is not a known value"}
    ]
