"""The gateway in front of the real inventory service (it has landed): a staff write through
HTTP transcoding, the availability SSE stream seeing that write, and the product page with
nearby stock from real store locations."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tests.services.conftest import Tokens
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, SeededCatalog

STORE = "tokyo-shibuya"
NEAR = "35.6595,139.7005"


async def _next_event(lines: Any) -> dict[str, Any]:
    async for line in lines:
        if line.startswith("data: "):
            return json.loads(line[len("data: ") :])  # type: ignore[no-any-return]
    raise AssertionError("stream ended")


async def test_sse_sees_a_stock_change_made_through_the_gateway(
    inventory_target: str, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    sku = f"GW-{uuid.uuid4().hex[:8]}"
    staff = dict(tokens.staff)
    async with start_gateway(targets={"inventory": inventory_target}) as gw:
        first = await gw.client.post(
            f"/v1/locations/{STORE}/stockLevels/{sku}:adjust",
            json={"quantity": "5", "reason": "MOVEMENT_REASON_RECEIPT", "requestId": "r1"},
            headers=staff,
        )
        assert first.status_code == 200, first.text
        assert first.json()["sku"] == sku  # response_body: the stock level alone
        async with gw.client.stream(
            "GET",
            "/v1/stream/availability",
            params={"skus": sku, "locationId": STORE},
            headers={"x-api-key": WEB_KEY},
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            snapshot = await asyncio.wait_for(_next_event(lines), 10)
            assert snapshot["sku"] == sku
            assert snapshot["availableToPromise"] == "5"
            second = await gw.client.post(
                f"/v1/locations/{STORE}/stockLevels/{sku}:adjust",
                json={"quantity": "-2", "reason": "MOVEMENT_REASON_DAMAGE", "requestId": "r2"},
                headers=staff,
            )
            assert second.status_code == 200, second.text
            change = await asyncio.wait_for(_next_event(lines), 10)
            assert change["sku"] == sku
            assert change["availableToPromise"] == "3"
        # A publishable key may read stock but not change it.
        refused = await gw.client.post(
            f"/v1/locations/{STORE}/stockLevels/{sku}:adjust",
            json={"quantity": "1", "reason": "MOVEMENT_REASON_RECEIPT"},
            headers={"x-api-key": WEB_KEY},
        )
        assert refused.status_code == 401


async def test_product_page_with_real_nearby_stock(
    seeded_catalog: SeededCatalog,
    inventory_target: str,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    product_id = seeded_catalog.product_ids[3]
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": inventory_target}
    ) as gw:
        product = (
            await gw.client.get(f"/v1/products/{product_id}", headers={"x-api-key": WEB_KEY})
        ).json()
        sku = product["variants"][0]["sku"]
        adjusted = await gw.client.post(
            f"/v1/locations/{STORE}/stockLevels/{sku}:adjust",
            json={"quantity": "4", "reason": "MOVEMENT_REASON_RECEIPT", "requestId": sku},
            headers=dict(tokens.staff),
        )
        assert adjusted.status_code == 200, adjusted.text
        page = await gw.client.get(
            f"/v1/storefront/products/{product_id}",
            params={"near": NEAR},
            headers={"x-api-key": WEB_KEY},
        )
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["unavailable"] == []
    stores = body["nearbyStores"]
    assert stores[0]["location"]["id"] == STORE
    assert any(line["sku"] == sku for line in stores[0]["available"])


async def test_permission_comes_before_validation_through_the_gateway(
    seeded_catalog: SeededCatalog,
    inventory_target: str,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    # Incomplete bodies: with a customer or kiosk token the answer is 403 without field
    # details; only staff with the scope get to hear which fields are wrong.
    incomplete = {
        "/v1/attributeDefinitions": {"labels": {"translations": {"en": "Material"}}},
        "/v1/locations": {"displayName": ""},
    }
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": inventory_target}
    ) as gw:
        for path, body in incomplete.items():
            for who, headers in {
                "customer": dict(tokens.customer),
                "kiosk": dict(tokens.device("KIOSK")),
            }.items():
                response = await gw.client.post(path, json=body, headers=headers)
                assert response.status_code == 403, (path, who, response.text)
                error = response.json()["error"]
                info = next(d for d in error["details"] if d["@type"].endswith("ErrorInfo"))
                assert info["reason"] == "PRINCIPAL_KIND_NOT_ALLOWED"
                assert not [d for d in error["details"] if d["@type"].endswith("BadRequest")]
            response = await gw.client.post(path, json=body, headers=dict(tokens.staff))
            assert response.status_code == 400, (path, response.text)
            details = response.json()["error"]["details"]
            assert any(d["@type"].endswith("BadRequest") for d in details), details


async def test_sourcing_is_tuned_over_http_without_a_release(
    inventory_target: str, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """The README's recipe: a DC-first version drafted, activated, and plans follow it; an
    active version cannot be edited (FAILED_PRECONDITION, 400)."""
    profile = f"dc-first-{uuid.uuid4().hex[:6]}"
    sku = f"GW-{uuid.uuid4().hex[:8]}"
    staff = dict(tokens.staff)
    plan_body = {
        "lines": [{"sku": sku, "quantity": "1"}],
        "deliveryPoint": {"latitude": 35.6812, "longitude": 139.7671},
        "sourcingProfile": profile,
    }
    async with start_gateway(targets={"inventory": inventory_target}) as gw:
        for location in (STORE, "dc-kanto"):
            stocked = await gw.client.post(
                f"/v1/locations/{location}/stockLevels/{sku}:adjust",
                json={"quantity": "3", "reason": "MOVEMENT_REASON_RECEIPT"},
                headers=staff,
            )
            assert stocked.status_code == 200, stocked.text
        draft = await gw.client.post(
            f"/v1/sourcingProfiles/{profile}/versions",
            json={
                "description": "DCs first",
                "criteria": [
                    "SOURCING_CRITERION_LOCATION_TYPE",
                    "SOURCING_CRITERION_FEWEST_SHIPMENTS",
                    "SOURCING_CRITERION_DISTANCE",
                ],
                "maxShipments": 2,
                "allowedLocationTypes": [
                    {
                        "method": "FULFILLMENT_METHOD_DELIVERY",
                        "locationTypes": [
                            "LOCATION_TYPE_DISTRIBUTION_CENTER",
                            "LOCATION_TYPE_FULFILLMENT_CENTER",
                            "LOCATION_TYPE_STORE",
                        ],
                    }
                ],
                "fallbacks": ["SOURCING_FALLBACK_SPLIT_BEYOND_MAX", "SOURCING_FALLBACK_PARTIAL"],
            },
            headers=staff,
        )
        assert draft.status_code == 200, draft.text
        assert draft.json()["state"] == "SOURCING_PROFILE_VERSION_STATE_DRAFT"
        version = draft.json()["version"]
        unplanned = await gw.client.post(
            "/v1/fulfillmentPlans:plan", json=plan_body, headers={"x-api-key": WEB_KEY}
        )
        assert unplanned.status_code == 404, unplanned.text  # a draft decides nothing
        active = await gw.client.post(
            f"/v1/sourcingProfiles/{profile}/versions/{version}:activate", json={}, headers=staff
        )
        assert active.status_code == 200, active.text
        plan = await gw.client.post(
            "/v1/fulfillmentPlans:plan", json=plan_body, headers={"x-api-key": WEB_KEY}
        )
        assert plan.status_code == 200, plan.text
        assert [a["locationId"] for a in plan.json()["allocations"]] == ["dc-kanto"]
        assert plan.json()["sourcingProfileVersion"] == version
        edit = await gw.client.patch(
            f"/v1/sourcingProfiles/{profile}/versions/{version}",
            params={"updateMask": "maxShipments"},
            json={"maxShipments": 3},
            headers=staff,
        )
        assert edit.status_code == 400, edit.text  # FAILED_PRECONDITION
        info = next(d for d in edit.json()["error"]["details"] if d["@type"].endswith("ErrorInfo"))
        assert info["reason"] == "SOURCING_PROFILE_VERSION_NOT_DRAFT"
        history = await gw.client.get(
            "/v1/sourcingProfileVersions", params={"profile": profile}, headers=staff
        )
        assert [v["state"] for v in history.json()["versions"]] == [
            "SOURCING_PROFILE_VERSION_STATE_ACTIVE"
        ]
