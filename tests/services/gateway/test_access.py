"""Who may call what through the gateway (the auth matrix), what the backends are told, and
the abuse limits: rate limits with Retry-After, body size, page size, CORS."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_api_pb
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import (
    APP_KEY,
    WEB_KEY,
    GatewayFactory,
    InventoryHandle,
    SeededCatalog,
)

DEV_ASSERTION = ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET)
READ = "read"
WRITE = "write"
PUBLIC_WRITE = "public write"


def _headers(who: str, tokens: Tokens) -> dict[str, str]:
    if who == "anonymous":
        return {}
    if who == "publishable key":
        return {"x-api-key": WEB_KEY}
    if who == "customer":
        return dict(tokens.customer)
    if who == "device":
        return dict(tokens.device("KIOSK"))
    if who == "staff":
        return dict(tokens.staff)
    raise AssertionError(who)


def _error(response: Any) -> tuple[str, str]:
    body = response.json()["error"]
    assert body["code"] == response.status_code
    assert set(body) == {"code", "message", "status", "details"}
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    return body["status"], info["reason"]


#: (principal, kind of route) → expected HTTP status, and reason for refusals.
MATRIX = {
    ("anonymous", READ): (401, "API_KEY_REQUIRED"),
    ("anonymous", WRITE): (401, "API_KEY_REQUIRED"),
    ("anonymous", PUBLIC_WRITE): (401, "API_KEY_REQUIRED"),
    ("publishable key", READ): (200, None),
    ("publishable key", WRITE): (401, "AUTHENTICATION_REQUIRED"),
    ("publishable key", PUBLIC_WRITE): (200, None),
    # The write's contract admits staff and services only: the gateway refuses the rest.
    ("customer", READ): (200, None),
    ("customer", WRITE): (403, "PRINCIPAL_KIND_NOT_ALLOWED"),
    ("customer", PUBLIC_WRITE): (200, None),
    ("device", READ): (200, None),
    ("device", WRITE): (403, "PRINCIPAL_KIND_NOT_ALLOWED"),
    ("device", PUBLIC_WRITE): (200, None),
    ("staff", READ): (200, None),
    ("staff", WRITE): (200, None),
    ("staff", PUBLIC_WRITE): (200, None),
}


async def test_auth_matrix(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    product_id = seeded_catalog.product_ids[0]
    async with start_gateway(targets={"catalog": seeded_catalog.target}) as gw:
        for (who, kind), (status, reason) in MATRIX.items():
            headers = _headers(who, tokens)
            if kind == READ:
                response = await gw.client.get(f"/v1/products/{product_id}", headers=headers)
            elif kind == PUBLIC_WRITE:
                response = await gw.client.post(
                    "/v1/products:search", json={"query": "スニーカー"}, headers=headers
                )
            else:
                slug = f"gw-{uuid.uuid4().hex[:8]}"
                response = await gw.client.post(
                    "/v1/categories",
                    json={"slug": slug, "titles": {"translations": {"ja": "テスト", "en": "Test"}}},
                    headers=headers,
                )
            assert response.status_code == status, (who, kind, response.text)
            if status != 200:
                code, found_reason = _error(response)
                assert code in ("UNAUTHENTICATED", "PERMISSION_DENIED")
                if reason is not None:
                    assert found_reason == reason, (who, kind)
            elif kind == WRITE:
                assert response.json()["slug"].startswith("gw-")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-api-key": "pk_unknown"}, "API_KEY_INVALID"),
        ({"authorization": "Bearer not.a.token"}, "TOKEN_INVALID"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "AUTHENTICATION_MALFORMED"),
    ],
)
async def test_bad_credentials_are_refused(
    seeded_catalog: SeededCatalog,
    start_gateway: GatewayFactory,
    headers: dict[str, str],
    reason: str,
) -> None:
    async with start_gateway(targets={"catalog": seeded_catalog.target}) as gw:
        response = await gw.client.get("/v1/products", headers=headers)
    assert response.status_code == 401
    assert _error(response) == ("UNAUTHENTICATED", reason)


async def test_expired_token_is_refused(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    from datetime import UTC, datetime, timedelta

    expired = tokens.mint(
        subject="customer-9", kind="customer", now=datetime.now(UTC) - timedelta(hours=2)
    )
    async with start_gateway(targets={"catalog": seeded_catalog.target}) as gw:
        response = await gw.client.get(
            "/v1/products", headers={"authorization": f"Bearer {expired}"}
        )
    assert response.status_code == 401
    assert _error(response) == ("UNAUTHENTICATED", "TOKEN_EXPIRED")


async def test_backends_get_channel_token_and_trace(
    seeded_catalog: SeededCatalog,
    fake_inventory: InventoryHandle,
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    body = {
        "point": {"latitude": 35.66, "longitude": 139.7},
        "lines": [{"sku": "X", "quantity": 1}],
    }
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "inventory": fake_inventory.target}
    ) as gw:
        # The key fixes the channel; a client-sent x-tenpo-channel is dropped.
        response = await gw.client.post(
            "/v1/availability:nearby",
            json=body,
            headers={
                "x-api-key": APP_KEY,
                "x-tenpo-channel": "POS",
                "x-tenpo-channel-proof": "1800000000.Zm9yZ2Vk",
                "x-request-id": "req-123",
                "traceparent": traceparent,
                "accept-language": "en",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "req-123"
        device = tokens.device("KIOSK", store="shinjuku")
        response = await gw.client.post("/v1/availability:nearby", json=body, headers=dict(device))
        assert response.status_code == 200, response.text
        assert len(response.headers["x-request-id"]) == 32
    anonymous, with_device = fake_inventory.fake.seen_metadata
    assert anonymous["x-tenpo-channel"] == "APP"
    # The services trust the header only with the gateway's proof, under the shared secret.
    assert DEV_ASSERTION.verify("APP", anonymous["x-tenpo-channel-proof"])
    assert "authorization" not in anonymous
    assert anonymous["x-request-id"] == "req-123"
    assert anonymous["traceparent"] == traceparent
    assert anonymous["accept-language"] == "en"
    assert with_device["authorization"] == device[0][1]
    assert "x-tenpo-channel" not in with_device  # the token carries channel and store
    assert "x-tenpo-channel-proof" not in with_device
    assert with_device["traceparent"].startswith("00-")


async def test_ingress_drops_a_client_sent_channel_and_proof(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    request = inventory_api.FindNearbyAvailabilityRequest(
        point=common_pb2.GeoPoint(latitude=35.66, longitude=139.7),
        lines=[inventory_api_pb.StockLine(sku="X", quantity=1)],
    )
    async with (
        start_gateway(targets={"inventory": fake_inventory.target}) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        await inventory_grpc.InventoryServiceStub(channel).FindNearbyAvailability(
            request,
            metadata=(
                ("x-api-key", APP_KEY),
                ("x-tenpo-channel", "KIOSK"),
                ("x-tenpo-channel-proof", DEV_ASSERTION.proof("KIOSK")),
            ),
        )
    seen = fake_inventory.fake.seen_metadata[-1]
    assert seen["x-tenpo-channel"] == "APP"
    assert DEV_ASSERTION.verify("APP", seen["x-tenpo-channel-proof"])


async def test_rate_limits_answer_429_with_retry_after(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    async with start_gateway(
        targets={"catalog": seeded_catalog.target, "customer": "127.0.0.1:1"},
        address_rate=0.01,
        address_burst=5,
        principal_rate=0.01,
        principal_burst=3,
    ) as gw:
        # Per client address, for anonymous callers with a publishable key.
        statuses = [
            (await gw.client.get("/v1/categories", headers={"x-api-key": WEB_KEY})).status_code
            for _ in range(8)
        ]
        assert statuses[:5] == [200] * 5
        assert statuses[5:] == [429] * 3
        limited = await gw.client.get("/v1/categories", headers={"x-api-key": WEB_KEY})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert _error(limited) == ("RESOURCE_EXHAUSTED", "RATE_LIMITED")

        # Per principal: a token holder has a bucket of their own.
        customer = dict(tokens.customer)
        statuses = [
            (await gw.client.get("/v1/categories", headers=customer)).status_code for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]


async def test_sign_in_is_limited_more_strictly(start_gateway: GatewayFactory) -> None:
    # The customer service is down: sign-ins fail with 503/504 until the limit (counted per
    # address before any backend call) turns them into 429s.
    async with start_gateway(
        targets={"customer": "127.0.0.1:1"},
        sign_in_rate=0.01,
        sign_in_burst=2,
        backend_timeout_seconds=1,
    ) as gw:
        statuses = [
            (
                await gw.client.post(
                    "/v1/identity:signIn", json={"email": "a@example.com", "password": "x"}
                )
            ).status_code
            for _ in range(3)
        ]
        browsing = await gw.client.get("/.well-known/jwks.json")
    assert statuses[2] == 429
    assert set(statuses[:2]) <= {503, 504}
    # Other routes from the same address are not affected by the sign-in bucket.
    assert browsing.status_code in (503, 504)


async def test_body_size_page_size_cors_and_unknown_routes(
    seeded_catalog: SeededCatalog, start_gateway: GatewayFactory
) -> None:
    key = {"x-api-key": WEB_KEY}
    async with start_gateway(
        targets={"catalog": seeded_catalog.target},
        max_body_bytes=1024,
        max_page_size=3,
        cors_allowed_origins=["https://shop.example"],
    ) as gw:
        big = await gw.client.post("/v1/products:search", json={"query": "x" * 2000}, headers=key)
        assert big.status_code == 413
        assert _error(big) == ("INVALID_ARGUMENT", "BODY_TOO_LARGE")

        page = await gw.client.get("/v1/products", params={"pageSize": 500}, headers=key)
        assert page.status_code == 200
        assert len(page.json()["products"]) == 3

        preflight = await gw.client.options(
            "/v1/products",
            headers={"origin": "https://shop.example", "access-control-request-method": "GET"},
        )
        assert preflight.status_code == 204
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        simple = await gw.client.get(
            "/v1/categories", headers={**key, "origin": "https://shop.example"}
        )
        assert simple.headers["access-control-allow-origin"] == "https://shop.example"
        foreign = await gw.client.get(
            "/v1/categories", headers={**key, "origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in foreign.headers

        missing = await gw.client.get("/v1/nothing-here", headers=key)
        assert missing.status_code == 404
        assert _error(missing) == ("NOT_FOUND", "ROUTE_NOT_FOUND")
        wrong_verb = await gw.client.put("/v1/products", headers=key)
        assert wrong_verb.status_code == 405
        unknown_param = await gw.client.get("/v1/products", params={"color": "red"}, headers=key)
        assert unknown_param.status_code == 400
        bad_json = await gw.client.post("/v1/products:search", content=b"{not json", headers=key)
        assert bad_json.status_code == 400
        assert _error(bad_json) == ("INVALID_ARGUMENT", "REQUEST_INVALID")


async def test_backend_down_is_an_error_in_the_documented_shape(
    start_gateway: GatewayFactory,
) -> None:
    async with start_gateway(targets={"catalog": "127.0.0.1:1"}, backend_timeout_seconds=1) as gw:
        response = await gw.client.get("/v1/categories", headers={"x-api-key": WEB_KEY})
    # Refused connections are retried with backoff by the channel, so either the retries run
    # out (503) or the deadline does (504).
    assert (response.status_code, *_error(response)) in (
        (503, "UNAVAILABLE", "BACKEND_UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED", "BACKEND_TIMEOUT"),
    )
    assert "127.0.0.1" not in response.text  # transport details stay inside


def test_the_policy_reads_the_contract() -> None:
    """Without servers: the rules the gateway takes from the descriptor set."""
    from dataclasses import replace

    from services.gateway.access import AccessPolicy, Caller
    from services.gateway.config import GatewaySettings
    from services.gateway.descriptors import load_schema
    from tenpo.kit.auth import Principal, StaticJwks, TokenVerifier
    from tenpo.kit.errors import DomainError

    schema = load_schema()
    verifier = TokenVerifier(StaticJwks({"keys": []}), issuer="i", audience="a")
    policy = AccessPolicy(GatewaySettings(), verifier, schema)
    # The sign-in bucket covers what the settings list used to name, from the contract now.
    assert policy._sign_in == {
        f"tenpo.customer.v1.IdentityService.{name}"
        for name in (
            "SignIn",
            "SignInStaff",
            "SignInClient",
            "RefreshToken",
            "Register",
            "RequestPasswordReset",
            "ResetPassword",
        )
    }

    def refusal(method_name: str, caller: Caller) -> str | None:
        method = schema.method(method_name)
        assert method is not None
        try:
            policy.authorize(method, caller)
        except DomainError as error:
            return error.reason
        return None

    nobody = Caller(Principal.anonymous(), None, None, 0, "10.0.0.1")
    keyed = Caller(Principal.anonymous(1), None, WEB_KEY, 1, "10.0.0.1")
    assert refusal("tenpo.customer.v1.IdentityService.SignIn", nobody) is None
    assert refusal("tenpo.customer.v1.IdentityService.GetJwks", nobody) is None
    assert refusal("tenpo.catalog.v1.CatalogService.GetProduct", nobody) == "API_KEY_REQUIRED"
    assert refusal("tenpo.catalog.v1.CatalogService.GetProduct", keyed) is None
    assert refusal("tenpo.customer.v1.IdentityService.Register", keyed) is None
    # GET-mapped but not public: refused here now, not proxied to be refused by the service.
    assert refusal("tenpo.customer.v1.IdentityService.ListClients", keyed) == (
        "AUTHENTICATION_REQUIRED"
    )
    assert refusal("tenpo.inventory.v1.InventoryService.ListMovements", keyed) == (
        "AUTHENTICATION_REQUIRED"
    )
    # A method whose contract states no rule is open to no one.
    get_product = schema.method("tenpo.catalog.v1.CatalogService.GetProduct")
    assert get_product is not None
    unruled = replace(get_product, access=None)
    with pytest.raises(DomainError) as caught:
        policy.authorize(unruled, keyed)
    assert caught.value.reason == "ACCESS_RULE_MISSING"
    # Every method the gateway proxies states a rule.
    assert all(m.access is not None for m in schema.methods.values())
