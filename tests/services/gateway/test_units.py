"""Gateway pieces that need no server: path templates, transcoding, errors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from services.gateway.descriptors import HttpBinding, load_schema
from services.gateway.errors import error_body
from services.gateway.routes import Router, build_route, compile_template
from services.gateway.transcode import build_request, render
from tenpo.kit.errors import InvalidArgument

SCHEMA = load_schema()


def _route(method_name: str, verb: str, template: str, body: str = "", response_body: str = ""):  # type: ignore[no-untyped-def]
    method = SCHEMA.method(method_name)
    assert method is not None
    return build_route(method, HttpBinding(verb, template, body, response_body))


def test_every_tenpo_service_in_the_descriptor_set_is_known() -> None:
    assert "tenpo.catalog.v1.CatalogService" in SCHEMA.services
    get_product = SCHEMA.method("tenpo.catalog.v1.CatalogService.GetProduct")
    assert get_product is not None
    assert get_product.is_read
    assert get_product.bindings[0].template == "/v1/products/{id}"
    assert get_product.comment.startswith("Get one product.")
    assert not any(m.service.startswith("google.") for m in SCHEMA.methods.values())


def test_templates_with_nested_fields_verbs_and_wildcards() -> None:
    pattern, variables, _ = compile_template("/v1/products/{product.id}")
    assert [v.field_path for v in variables] == [("product", "id")]
    assert pattern.fullmatch("/v1/products/abc")
    assert not pattern.fullmatch("/v1/products/a/b")
    pattern, variables, _ = compile_template("/v1/{name=shelves/*/books/**}:publish")
    found = pattern.fullmatch("/v1/shelves/s1/books/x/y:publish")
    assert found is not None and found.group(1) == "shelves/s1/books/x/y"


def test_router_prefers_verbs_and_decodes_variables() -> None:
    router = Router(
        [
            _route("tenpo.catalog.v1.CatalogService.GetProduct", "GET", "/v1/products/{id}"),
            _route(
                "tenpo.catalog.v1.CatalogService.BatchGetProducts", "GET", "/v1/products:batchGet"
            ),
            _route(
                "tenpo.catalog.v1.CatalogService.ListRelatedProducts",
                "GET",
                "/v1/products/{product_id}/related",
            ),
            _route("tenpo.catalog.v1.CatalogService.MoveCategory", "POST", "/v1/x/{id}:move", "*"),
            _route("tenpo.catalog.v1.CatalogService.GetCategory", "GET", "/v1/x/{id}"),
        ]
    )
    route, values = router.match("GET", "/v1/products/a%2Fb") or (None, None)
    assert route is not None and route.method.name == "GetProduct"
    assert values == {"id": "a/b"}
    batch = router.match("GET", "/v1/products:batchGet")
    assert batch is not None and batch[0].method.name == "BatchGetProducts"
    related = router.match("GET", "/v1/products/p1/related")
    assert related is not None and related[1] == {"product_id": "p1"}
    move = router.match("POST", "/v1/x/c1:move")
    assert move is not None and move[1] == {"id": "c1"}
    assert router.match("DELETE", "/v1/products/p1") is None
    assert router.allowed_verbs("/v1/products/p1") == ["GET"]


def test_query_path_and_body_transcoding() -> None:
    search = _route("tenpo.catalog.v1.CatalogService.SearchProducts", "POST", "/s", "*")
    message = build_request(
        search,
        {},
        [],
        b'{"query": "boots", "pageSize": 500, "sort": "SEARCH_SORT_NEWEST", "page_token": "t"}',
        max_page_size=100,
    )
    assert message.query == "boots"  # type: ignore[attr-defined]
    assert message.page_size == 100  # type: ignore[attr-defined]  # clamped
    assert message.sort == 4  # type: ignore[attr-defined]
    assert message.page_token == "t"  # type: ignore[attr-defined]  # proto names accepted too

    prices = _route("tenpo.catalog.v1.CatalogService.GetPrices", "GET", "/v1/prices")
    message = build_request(
        prices,
        {},
        [
            ("skus", "A"),
            ("skus", "B"),
            ("channel", "CHANNEL_APP"),
            ("atTime", "2026-01-02T03:04:05Z"),
        ],
        None,
        max_page_size=100,
    )
    assert list(message.skus) == ["A", "B"]  # type: ignore[attr-defined]
    assert message.channel == 2  # type: ignore[attr-defined]
    assert message.at_time.seconds > 0  # type: ignore[attr-defined]

    update = _route(
        "tenpo.catalog.v1.CatalogService.UpdateProduct",
        "PATCH",
        "/v1/products/{product.id}",
        "product",
        "product",
    )
    message = build_request(
        update,
        {"product.id": "p-1"},
        [("updateMask", "title,brand"), ("requestId", "r-1")],
        b'{"brand": "Minatoya", "id": "ignored"}',
        max_page_size=100,
    )
    assert message.product.id == "p-1"  # type: ignore[attr-defined]  # the path wins
    assert message.product.brand == "Minatoya"  # type: ignore[attr-defined]
    assert list(message.update_mask.paths) == ["title", "brand"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ([("pageSize", "many")], None),
        ([("pageSize", "99999999999")], None),
        ([("nope", "1")], None),
        ([("status", "NOT_A_STATUS")], None),
        ([("categoryId", "a\x00b")], None),
    ],
)
def test_bad_input_is_invalid_argument(query: list[tuple[str, str]], body: bytes | None) -> None:
    route = _route("tenpo.catalog.v1.CatalogService.ListProducts", "GET", "/v1/products")
    with pytest.raises(InvalidArgument) as raised:
        build_request(route, {}, query, body, max_page_size=100)
    assert raised.value.field_violations


def test_body_errors_and_response_body() -> None:
    create = _route(
        "tenpo.catalog.v1.CatalogService.CreateProduct", "POST", "/v1/products", "product"
    )
    for body in (b"[1, 2]", b'{"brand": 5}', b'{"brand": "a\\u0000"}', b"\xff"):
        with pytest.raises(InvalidArgument):
            build_request(create, {}, [], body, max_page_size=100)
    get = _route(
        "tenpo.catalog.v1.CatalogService.GetProduct", "GET", "/v1/products/{id}", "", "product"
    )
    response = get.method.response_class()(product={"id": "p", "code": "SNK-1"})
    assert render(get, response) == b'{"id":"p","code":"SNK-1"}'


def test_grpc_status_becomes_aip193() -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="PRODUCT_NOT_FOUND", domain="tenpo.dev"))
    status, body = error_body(
        status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="no", details=[info])
    )
    assert status == 404
    assert body == {
        "error": {
            "code": 404,
            "message": "no",
            "status": "NOT_FOUND",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "PRODUCT_NOT_FOUND",
                    "domain": "tenpo.dev",
                }
            ],
        }
    }
    # No ErrorInfo from the backend: one is added, named after the code.
    status, body = error_body(status_pb2.Status(code=grpc.StatusCode.ABORTED.value[0]))
    assert status == 409
    assert body["error"]["details"][0]["reason"] == "ABORTED"


def test_production_refuses_development_keys_and_open_cors() -> None:
    from pydantic import ValidationError

    from services.gateway.config import GatewaySettings

    production = {
        "environment": "production",
        "auth_jwks_url": "https://auth.example/.well-known/jwks.json",
        "page_token_secret": "s" * 40,
        "channel_assertion_secret": "c" * 40,
        "cors_allowed_origins": ["https://shop.example"],
    }
    with pytest.raises(ValidationError, match="development publishable keys"):
        GatewaySettings(**production)
    with pytest.raises(ValidationError, match="cors_allowed_origins"):
        GatewaySettings(**production | {"publishable_keys": {}, "cors_allowed_origins": ["*"]})
    settings = GatewaySettings(
        **production | {"publishable_keys": {"pk_live_web_1": "WEB"}, "targets": {"x": "h:1"}}
    )
    assert settings.target("x") == "h:1"  # no database needed
