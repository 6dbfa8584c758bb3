"""Gateway documentation endpoints: ``/openapi.json``, ``/docs`` (Swagger UI, its files
served from a wheel under ``/docs/assets/``), and the OpenAPI entries of the hand-built
routes (composed view, SSE streams)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from services.gateway.composed import TEMPLATE as STOREFRONT_TEMPLATE
from services.gateway.descriptors import Schema
from services.gateway.errors import http_error
from services.gateway.http import Handler, Request, Send, send_bytes
from services.gateway.openapi import ERROR_RESPONSES, OpenApiBuilder
from services.gateway.sse import StreamEndpoint
from services.gateway.transcode import to_json

#: The wheel that ships Swagger UI's distribution files (Swagger UI 5: the first to render
#: OpenAPI 3.1). Served by the gateway itself: stores and air-gapped clusters have no CDN.
SWAGGER_UI_DISTRIBUTION = "swagger-ui-py"
ASSETS_PREFIX = "/docs/assets/"
#: File → content type. Only these are served; nothing else of the wheel is reachable.
SWAGGER_UI_FILES = {
    "swagger-ui.css": b"text/css; charset=utf-8",
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}
#: The initializer is a file of its own, not an inline script, so the CSP needs no
#: 'unsafe-inline'. Relative URLs keep the page working behind a path-prefix proxy.
DOCS_INIT_SCRIPT = b"""window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  tryItOutEnabled: true,
  validatorUrl: null
});
"""
#: Everything from the gateway itself. Images also from data: URIs, which Swagger UI's
#: stylesheet uses for its icons (a data: image cannot run code).
DOCS_CSP = (
    b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", DOCS_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tenpo API</title>
  <link rel="stylesheet" href="{assets}swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets}favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}swagger-ui-bundle.js"></script>
  <script src="{assets}init.js"></script>
</body>
</html>
"""


@dataclass(frozen=True)
class DocsAssets:
    """Swagger UI's files, read once when the gateway is built (under 2 MB)."""

    version: str
    files: dict[str, tuple[bytes, bytes]]  # name → (content type, bytes)

    @property
    def prefix(self) -> str:
        # The version in the path lets browsers keep the files for good.
        return f"{ASSETS_PREFIX}{self.version}/"

    @classmethod
    def load(cls) -> DocsAssets:
        distribution = metadata.distribution(SWAGGER_UI_DISTRIBUTION)
        files: dict[str, tuple[bytes, bytes]] = {}
        for name, content_type in SWAGGER_UI_FILES.items():
            path = Path(str(distribution.locate_file(f"swagger_ui/static/{name}")))
            files[name] = (content_type, path.read_bytes())
        files["init.js"] = (b"text/javascript; charset=utf-8", DOCS_INIT_SCRIPT)
        return cls(distribution.version, files)


def openapi_handler(document: dict[str, Any]) -> Handler:
    body = to_json(document)

    async def handle(request: Request, send: Send) -> int:
        request.route_label = "GET /openapi.json"
        await send_bytes(send, 200, body, b"application/json")
        return 200

    return handle


def docs_handler(assets: DocsAssets) -> Handler:
    # Relative to /docs, so the page also works when a proxy mounts the gateway elsewhere.
    body = DOCS_PAGE.format(assets=assets.prefix.lstrip("/")).encode()
    headers = [*SECURITY_HEADERS, (b"cache-control", b"no-cache")]

    async def handle(request: Request, send: Send) -> int:
        request.route_label = "GET /docs"
        await send_bytes(send, 200, body, b"text/html; charset=utf-8", headers)
        return 200

    return handle


def docs_assets_handler(assets: DocsAssets) -> Handler:
    """``GET /docs/assets/<version>/<file>``: Swagger UI's files, from the wheel."""
    headers = [*SECURITY_HEADERS, (b"cache-control", b"public, max-age=31536000, immutable")]

    async def handle(request: Request, send: Send) -> int:
        request.route_label = f"GET {ASSETS_PREFIX}{{file}}"
        name = request.raw_path.removeprefix(assets.prefix)
        found = assets.files.get(name) if request.raw_path.startswith(assets.prefix) else None
        if found is None:
            raise http_error(404, grpc.StatusCode.NOT_FOUND, "no such file", "ROUTE_NOT_FOUND")
        content_type, body = found
        await send_bytes(send, 200, body, content_type, headers)
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
