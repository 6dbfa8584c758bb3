"""Gateway documentation endpoints: ``/openapi.json``, ``/docs`` (Swagger UI), and the
OpenAPI entries of the hand-built routes (composed view, SSE streams)."""

from __future__ import annotations

from typing import Any

from services.gateway.composed import TEMPLATE as STOREFRONT_TEMPLATE
from services.gateway.descriptors import Schema
from services.gateway.http import Handler, Request, Send, send_bytes
from services.gateway.openapi import ERROR_RESPONSES, OpenApiBuilder
from services.gateway.sse import StreamEndpoint
from services.gateway.transcode import to_json

SWAGGER_UI_VERSION = "5.17.14"
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tenpo API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{v}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@{v}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui",
      persistAuthorization: true, tryItOutEnabled: true}});
  </script>
</body>
</html>
""".replace("{v}", SWAGGER_UI_VERSION)


def openapi_handler(document: dict[str, Any]) -> Handler:
    body = to_json(document)

    async def handle(request: Request, send: Send) -> int:
        request.route_label = "GET /openapi.json"
        await send_bytes(send, 200, body, b"application/json")
        return 200

    return handle


def docs_handler() -> Handler:
    body = DOCS_PAGE.encode()

    async def handle(request: Request, send: Send) -> int:
        request.route_label = "GET /docs"
        await send_bytes(send, 200, body, b"text/html; charset=utf-8")
        return 200

    return handle


def _error_refs() -> dict[str, Any]:
    refs: dict[str, Any] = {
        code: {"$ref": f"#/components/responses/Error{code}"} for code in ERROR_RESPONSES
    }
    refs["default"] = {"$ref": "#/components/responses/Error500"}
    return refs


def _message_or_object(builder: OpenApiBuilder, schema: Schema, name: str) -> dict[str, Any]:
    descriptor = schema.message(name)
    return builder.message_schema(descriptor) if descriptor is not None else {"type": "object"}


def storefront_openapi(builder: OpenApiBuilder, schema: Schema) -> dict[str, dict[str, Any]]:
    product = _message_or_object(builder, schema, "tenpo.catalog.v1.Product")
    price = _message_or_object(builder, schema, "tenpo.catalog.v1.ResolvedPrice")
    related = _message_or_object(builder, schema, "tenpo.catalog.v1.RelatedProduct")
    stock_line = _message_or_object(builder, schema, "tenpo.inventory.v1.StockLine")
    location = _message_or_object(builder, schema, "tenpo.inventory.v1.Location")
    body = {
        "type": "object",
        "required": ["product", "unavailable"],
        "properties": {
            "product": product,
            "prices": {"type": "array", "items": price, "description": "Prices that apply now."},
            "related": {"type": "array", "items": related},
            "nearbyStores": {
                "type": "array",
                "description": "Nearest stores with stock of the product's variants (with "
                "`near`), nearest first.",
                "items": {
                    "type": "object",
                    "properties": {
                        "location": location,
                        "distanceKm": {"type": "number"},
                        "available": {"type": "array", "items": stock_line},
                    },
                },
            },
            "unavailable": {
                "type": "array",
                "description": "Parts left out because their backend failed or ran out of time.",
                "items": {"type": "string", "enum": ["prices", "availability", "related"]},
            },
        },
    }
    return {
        STOREFRONT_TEMPLATE: {
            "get": {
                "operationId": "GetStorefrontProduct",
                "tags": ["Storefront"],
                "summary": "Product page: product, prices, nearby stock and related products.",
                "description": "Composed from the catalog and inventory in parallel within one "
                "deadline; parts whose backend is down are listed in `unavailable`.",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "near",
                        "in": "query",
                        "description": "Customer location as 'latitude,longitude'.",
                        "schema": {
                            "type": "string",
                            "pattern": r"^-?[0-9]{1,2}(\.[0-9]+)?,-?[0-9]{1,3}(\.[0-9]+)?$",
                        },
                    },
                    {
                        "name": "sku",
                        "in": "query",
                        "description": "Only this variant's nearby stock.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "language_code",
                        "in": "query",
                        "description": "Language for titles (default from Accept-Language).",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": body}},
                    },
                    **_error_refs(),
                },
            }
        }
    }


def stream_openapi(builder: OpenApiBuilder, endpoint: StreamEndpoint) -> dict[str, dict[str, Any]]:
    method = endpoint.method
    parameters = list(
        builder.query_parameters(method.input, "", set(), 1, {method.input.full_name})
    )
    parameters.append(
        {
            "name": "key",
            "in": "query",
            "description": "The channel's publishable key, for EventSource clients that "
            "cannot send the x-api-key header.",
            "schema": {"type": "string"},
        }
    )
    item = builder.message_schema(method.output)
    return {
        endpoint.path: {
            "get": {
                "operationId": f"Stream{method.name}",
                "tags": ["Streams"],
                "summary": f"Server-sent events of {method.name}.",
                "description": f"{method.comment}\n\nEach event's `data` is one "
                f"`{method.output.full_name}` as JSON; comment lines keep the connection "
                "open; `event: error` carries an AIP-193 error and ends the stream.",
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "An event stream.",
                        "content": {
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "x-item-schema": item,
                            }
                        },
                    },
                    **_error_refs(),
                },
            }
        }
    }
