"""Gateway composition layer: the storefront product page in one request.

``GET /v1/storefront/products/{id}?near=lat,lng&sku=&language_code=``: the product (in the
caller's language and channel), the prices that apply now, the nearest stores with stock,
and related products. Backend calls run in parallel within one overall deadline:

    phase 1: catalog.GetProduct  ∥ catalog.ListRelatedProducts
    phase 2: catalog.GetPrices   ∥ inventory.FindNearbyAvailability (one per variant)

Phase 2 needs the product's SKUs. The product is the page: without it the answer is the
product's error. Any other part that fails or runs out of time is left out and named in
``unavailable``. Methods are looked up by name in the descriptor set, so the view degrades
the same way when a service (or its proto) does not exist yet.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from services.gateway.access import AccessPolicy
from services.gateway.backends import Backends
from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from services.gateway.errors import from_rpc_error, http_error
from services.gateway.http import Request, Send, send_json
from services.gateway.transcode import clamp_page_size

PATH_PREFIX = "/v1/storefront/products/"
TEMPLATE = "/v1/storefront/products/{id}"
GET_PRODUCT = "tenpo.catalog.v1.CatalogService.GetProduct"
LIST_RELATED = "tenpo.catalog.v1.CatalogService.ListRelatedProducts"
GET_PRICES = "tenpo.catalog.v1.CatalogService.GetPrices"
FIND_NEARBY = "tenpo.inventory.v1.InventoryService.FindNearbyAvailability"
PARTS = ("prices", "availability", "related")
RELATED_PAGE_SIZE = 12
NEARBY_STORES = 5
NEARBY_RADIUS_KM = 20.0


class PartUnavailable(Exception):
    pass


def parse_near(text: str) -> tuple[float, float]:
    try:
        lat_text, lng_text = text.split(",")
        lat, lng = float(lat_text), float(lng_text)
    except ValueError:
        raise _invalid("near", "must be 'latitude,longitude'") from None
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
        raise _invalid("near", "is out of range")
    return lat, lng


def _invalid(field: str, description: str) -> Exception:
    return http_error(
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: {field} {description}",
        "REQUEST_INVALID",
        {"field": field},
    )


class StorefrontProductView:
    def __init__(
        self,
        settings: GatewaySettings,
        schema: Schema,
        backends: Backends,
        policy: AccessPolicy,
    ) -> None:
        self._settings = settings
        self._schema = schema
        self._backends = backends
        self._policy = policy

    def _method(self, name: str) -> Method | None:
        method = self._schema.method(name)
        if method is None or not self._backends.configured(method.owner):
            return None
        return method

    async def _call(
        self, name: str, document: dict[str, Any], metadata: list[tuple[str, str]], deadline: float
    ) -> Message:
        """One backend call by method name with the time left; PartUnavailable if the method
        or its backend is missing, the request no longer fits the proto, or time is up."""
        method = self._method(name)
        if method is None:
            raise PartUnavailable(name)
        request = method.request_class()()
        try:
            json_format.ParseDict(document, request)
        except json_format.ParseError:
            raise PartUnavailable(name) from None
        clamp_page_size(request, self._settings.max_page_size)
        remaining = deadline - time.monotonic()
        if remaining <= 0.005:
            raise PartUnavailable(name)
        return await self._backends.callable(method)(request, metadata=metadata, timeout=remaining)

    async def __call__(self, request: Request, send: Send) -> int:
        request.route_label = f"GET {TEMPLATE}"
        product_id = request.raw_path[len(PATH_PREFIX) :]
        if not product_id or "/" in product_id:
            raise http_error(404, grpc.StatusCode.NOT_FOUND, "no such route", "ROUTE_NOT_FOUND")
        get_product = self._method(GET_PRODUCT)
        if get_product is None:
            raise http_error(
                503,
                grpc.StatusCode.UNAVAILABLE,
                "the catalog is not available",
                "BACKEND_NOT_CONFIGURED",
            )
        caller = await self._policy.identify(
            request.authorization, request.api_key, request.address
        )
        request.caller = caller
        self._policy.authorize(get_product, caller)
        self._policy.limit("gateway.StorefrontProduct", caller)
        product_id = unquote(product_id)
        if "\x00" in product_id:
            raise _invalid("id", "must not contain NUL characters")
        query = dict(request.query())
        unknown = set(query) - {"near", "sku", "language_code", "languageCode"}
        if unknown:
            raise _invalid(sorted(unknown)[0], "is not a parameter of this route")
        near = parse_near(query["near"]) if query.get("near") else None
        language = query.get("language_code") or query.get("languageCode") or ""
        wanted_sku = query.get("sku") or ""
        metadata = request.backend_metadata(caller)
        deadline = time.monotonic() + self._settings.composed_timeout_seconds

        product_task = asyncio.ensure_future(
            self._call(
                GET_PRODUCT, {"id": product_id, "languageCode": language}, metadata, deadline
            )
        )
        related_task = asyncio.ensure_future(
            self._call(
                LIST_RELATED,
                {
                    "productId": product_id,
                    "pageSize": RELATED_PAGE_SIZE,
                    "languageCode": language,
                },
                metadata,
                deadline,
            )
        )
        try:
            try:
                product_response = await product_task
            except grpc.aio.AioRpcError as error:
                raise from_rpc_error(error) from None
            except PartUnavailable:
                raise http_error(
                    504,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the catalog did not answer in time",
                    "BACKEND_TIMEOUT",
                ) from None
            product = json_format.MessageToDict(product_response.product)  # type: ignore[attr-defined]
            skus = [v.sku for v in product_response.product.variants]  # type: ignore[attr-defined]
            if wanted_sku:
                if wanted_sku not in skus:
                    raise _invalid("sku", "is not a variant of this product")
                skus_for_stock = [wanted_sku]
            else:
                skus_for_stock = skus[: self._settings.composed_max_variants]

            prices_task = asyncio.ensure_future(
                self._call(GET_PRICES, {"skus": skus}, metadata, deadline) if skus else _empty()
            )
            point = {"latitude": near[0], "longitude": near[1]} if near is not None else {}
            nearby_tasks = [
                asyncio.ensure_future(
                    self._call(
                        FIND_NEARBY,
                        {
                            "point": point,
                            "radiusKm": NEARBY_RADIUS_KM,
                            "lines": [{"sku": sku, "quantity": 1}],
                            "pageSize": NEARBY_STORES,
                        },
                        metadata,
                        deadline,
                    )
                )
                for sku in (skus_for_stock if near is not None else [])
            ]
            unavailable: list[str] = []
            body: dict[str, Any] = {"product": product}

            prices = await _settle(prices_task)
            if prices is None:
                unavailable.append("prices")
            else:
                body["prices"] = (
                    json_format.MessageToDict(prices).get("prices", [])
                    if isinstance(prices, Message)
                    else []
                )

            related = await _settle(related_task)
            if related is None:
                unavailable.append("related")
            else:
                body["related"] = json_format.MessageToDict(related).get("related", [])

            if near is not None:
                results = [await _settle(task) for task in nearby_tasks]
                if nearby_tasks and all(r is None for r in results):
                    unavailable.append("availability")
                else:
                    body["nearbyStores"] = _merge_nearby(
                        [r for r in results if isinstance(r, Message)]
                    )
            body["unavailable"] = unavailable
        finally:
            for task in (product_task, related_task):
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: a failed part is not an unhandled error
        await send_json(send, 200, body)
        return 200


async def _empty() -> None:
    return None


async def _settle(task: asyncio.Future[Any]) -> Any:
    """The task's result, or None when its part is unavailable (any backend failure)."""
    try:
        result = await task
    except (TimeoutError, grpc.aio.AioRpcError, PartUnavailable):
        return None
    return result if result is not None else {}


def _merge_nearby(responses: list[Message]) -> list[dict[str, Any]]:
    """One entry per store, nearest first, with every variant it has in stock."""
    stores: dict[str, dict[str, Any]] = {}
    for response in responses:
        for entry in json_format.MessageToDict(response).get("locations", []):
            location = entry.get("location", {})
            key = location.get("id", "")
            merged = stores.setdefault(
                key,
                {"location": location, "distanceKm": entry.get("distanceKm", 0), "available": []},
            )
            merged["available"].extend(entry.get("available", []))
    return sorted(stores.values(), key=lambda s: s["distanceKm"])[:NEARBY_STORES]
