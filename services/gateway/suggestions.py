"""Gateway composition: a smart mirror's suggestions for what she tried on.

``GET /v1/mirror/suggestions?tried=SKU&tried=SKU&storeId=&languageCode=`` answers "what goes
with these?" in one request, for a mirror of the store (its device token) or for the customer
whose session was handed off to a device there (``storeId`` then names the store, since her
token carries the device and not the store):

    phase 1: catalog.BatchGetVariants(tried)          -> the products she tried
    phase 2: catalog.ListRelatedProducts per product  (in parallel)
    phase 3: inventory.GetAvailability(their SKUs, this store only)

A suggestion is a related product she did not try, with only the variants (sizes) this store
can promise right now; one with none is left out. Every call gets what is left of one overall
deadline (``composed_timeout_seconds``). A failing or missing catalog leaves no suggestions
and ``unavailable: ["related"]``; a failing inventory leaves the related products without
``availableVariants`` and ``unavailable: ["availability"]`` — never a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from services.gateway.composed import PartUnavailable, StorefrontProductView, _invalid, _settle
from services.gateway.errors import http_error
from services.gateway.http import Request, Send, send_json
from tenpo.kit import errors
from tenpo.kit.auth import PrincipalKind

PATH = "/v1/mirror/suggestions"
BATCH_GET_VARIANTS = "tenpo.catalog.v1.CatalogService.BatchGetVariants"
LIST_RELATED = "tenpo.catalog.v1.CatalogService.ListRelatedProducts"
GET_AVAILABILITY = "tenpo.inventory.v1.InventoryService.GetAvailability"
PARAMETERS = frozenset({"tried", "storeId", "store_id", "languageCode", "language_code"})
#: Bounds: a mirror session is a handful of garments, not a catalogue.
MAX_TRIED = 10
MAX_SKU_LENGTH = 64
MAX_STORE_ID_LENGTH = 64
RELATED_PER_PRODUCT = 12
MAX_SUGGESTIONS = 24
#: GetAvailability's own bound on SKUs per request.
MAX_AVAILABILITY_SKUS = 200


def parse_tried(values: list[str]) -> list[str]:
    """The tried SKUs, from repeated ``tried`` and/or comma-separated lists, de-duplicated
    in order; 400 naming ``tried`` when missing, too many, or malformed."""
    skus: list[str] = []
    for value in values:
        for part in value.split(","):
            sku = part.strip()
            if not sku:
                continue
            if len(sku) > MAX_SKU_LENGTH or "\x00" in sku:
                raise _invalid("tried", f"holds a malformed SKU (at most {MAX_SKU_LENGTH} chars)")
            if sku not in skus:
                skus.append(sku)
    if not skus:
        raise _invalid("tried", "must name at least one SKU that was tried on")
    if len(skus) > MAX_TRIED:
        raise _invalid("tried", f"names more than {MAX_TRIED} SKUs")
    return skus


class MirrorSuggestionsView(StorefrontProductView):
    """Reuses the product view's per-part calls (method lookup, time left, degradation)."""

    def _store_of(self, request: Request, store_param: str) -> str:
        """The store this caller may ask about: a mirror's own store, or the store named by a
        customer whose session is on a device (handed off). Anyone else is refused."""
        principal = request.caller.principal if request.caller is not None else None
        if len(store_param) > MAX_STORE_ID_LENGTH or "\x00" in store_param:
            raise _invalid("storeId", "is malformed")
        if principal is not None and principal.kind is PrincipalKind.DEVICE:
            if not principal.store_id:
                raise errors.PermissionDenied(
                    "this device belongs to no store", reason="DEVICE_STORE_REQUIRED"
                )
            if store_param and store_param != principal.store_id:
                raise errors.PermissionDenied(
                    "a device sees suggestions for its own store only", reason="STORE_MISMATCH"
                )
            return principal.store_id
        if principal is not None and principal.kind is PrincipalKind.CUSTOMER:
            if principal.session_device is None:
                raise errors.PermissionDenied(
                    "suggestions are for a session handed off to an in-store device",
                    reason="DEVICE_SESSION_REQUIRED",
                )
            if not store_param:
                raise _invalid("storeId", "is required for a handed-off customer session")
            return store_param
        raise errors.PermissionDenied(
            "suggestions are for in-store devices and handed-off sessions",
            reason="DEVICE_SESSION_REQUIRED",
        )

    async def __call__(self, request: Request, send: Send) -> int:
        request.route_label = f"GET {PATH}"
        batch_get = self._method(BATCH_GET_VARIANTS)
        caller = await self._policy.identify(
            request.authorization, request.api_key, request.address
        )
        request.caller = caller
        if batch_get is not None:
            self._policy.authorize(batch_get, caller)
        query = request.query()
        unknown = {name for name, _ in query} - PARAMETERS
        if unknown:
            raise _invalid(sorted(unknown)[0], "is not a parameter of this route")
        params = dict(query)
        store_id = self._store_of(request, params.get("storeId") or params.get("store_id") or "")
        self._policy.limit("gateway.MirrorSuggestions", caller)
        tried = parse_tried([value for name, value in query if name == "tried"])
        language = params.get("languageCode") or params.get("language_code") or ""
        metadata = request.backend_metadata(caller)
        deadline = time.monotonic() + self._settings.composed_timeout_seconds
        body: dict[str, Any] = {"storeId": store_id, "suggestions": [], "unavailable": []}

        try:
            variants = await self._call(
                BATCH_GET_VARIANTS, {"skus": tried, "languageCode": language}, metadata, deadline
            )
        except (TimeoutError, grpc.aio.AioRpcError, PartUnavailable):
            body["unavailable"] = ["related"]
            await send_json(send, 200, body)
            return 200
        found = {v.sku: v.product_id for v in variants.variants}  # type: ignore[attr-defined]
        missing = [sku for sku in tried if sku not in found]
        if missing:
            raise http_error(
                400,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid request: tried names an unknown SKU: {missing[0]}",
                "REQUEST_INVALID",
                {"field": "tried"},
            )
        tried_products = list(dict.fromkeys(found[sku] for sku in tried))

        related_tasks = [
            asyncio.ensure_future(
                self._call(
                    LIST_RELATED,
                    {
                        "productId": product_id,
                        "pageSize": RELATED_PER_PRODUCT,
                        "languageCode": language,
                    },
                    metadata,
                    deadline,
                )
            )
            for product_id in tried_products
        ]
        try:
            results = [await _settle(task) for task in related_tasks]
        finally:
            _reap(related_tasks)
        if all(result is None for result in results):
            body["unavailable"] = ["related"]
            await send_json(send, 200, body)
            return 200
        suggestions = _merge_related(
            [r for r in results if isinstance(r, Message)], set(tried_products)
        )

        skus = [
            variant["sku"]
            for suggestion in suggestions
            for variant in suggestion["product"].get("variants", [])
            if variant.get("sku") and variant["sku"] not in found
        ][:MAX_AVAILABILITY_SKUS]
        stock: dict[str, int] | None = {}
        if skus:
            availability_task = asyncio.ensure_future(
                self._call(
                    GET_AVAILABILITY,
                    {"skus": skus, "locationIds": [store_id]},
                    metadata,
                    deadline,
                )
            )
            try:
                availability = await _settle(availability_task)
            finally:
                _reap([availability_task])
            stock = _store_stock(availability, store_id) if availability is not None else None
        if stock is None:
            body["unavailable"] = ["availability"]
            body["suggestions"] = suggestions[:MAX_SUGGESTIONS]
        else:
            body["suggestions"] = _in_stock(suggestions, stock, set(found))[:MAX_SUGGESTIONS]
        await send_json(send, 200, body)
        return 200


def _reap(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: a failed part is not an unhandled error


def _merge_related(responses: list[Message], tried_products: set[str]) -> list[dict[str, Any]]:
    """One entry per related product, in the catalog's order, never one she tried."""
    merged: dict[str, dict[str, Any]] = {}
    for response in responses:
        for entry in json_format.MessageToDict(response).get("related", []):
            product = entry.get("product", {})
            product_id = product.get("id", "")
            if not product_id or product_id in tried_products or product_id in merged:
                continue
            merged[product_id] = {"type": entry.get("type", ""), "product": product}
    return list(merged.values())


def _store_stock(response: Any, store_id: str) -> dict[str, int]:
    """Available to promise per SKU at this store (a SKU without a level there has none)."""
    stock: dict[str, int] = {}
    if not isinstance(response, Message):
        return stock
    for availability in response.availabilities:  # type: ignore[attr-defined]
        for level in availability.locations:
            if level.location_id == store_id:
                stock[availability.sku] = level.available_to_promise
    return stock


def _in_stock(
    suggestions: list[dict[str, Any]], stock: dict[str, int], tried_skus: set[str]
) -> list[dict[str, Any]]:
    """Suggestions with only the variants this store can promise now; none left, none shown."""
    kept: list[dict[str, Any]] = []
    for suggestion in suggestions:
        available = [
            {**variant, "availableToPromise": str(stock[variant["sku"]])}
            for variant in suggestion["product"].get("variants", [])
            if variant.get("sku") not in tried_skus and stock.get(variant.get("sku", ""), 0) > 0
        ]
        if available:
            kept.append({**suggestion, "availableVariants": available})
    return kept
