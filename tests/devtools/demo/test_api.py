"""The demo's gateway client without a gateway: AIP-193 errors read for their reason, the
server-sent events parsed as the gateway writes them, a 429 waited out, a dead gateway said."""

from __future__ import annotations

import json

import httpx
import pytest

from tenpo.devtools.demo import api as demo_api
from tenpo.devtools.demo.api import Api, ApiError, Unreachable, _events


def _client(handler: object) -> httpx.Client:
    return httpx.Client(base_url="http://gateway.test", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_an_error_carries_the_reason_of_its_error_info() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "wrong code",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "PICKUP_CODE_MISMATCH",
                        }
                    ],
                }
            },
        )

    with _client(handler) as http, pytest.raises(ApiError) as raised:
        Api(http, key="pk").post("/v1/orders/x/fulfillments/y:confirmPickup", {"pickupCode": "B"})
    assert raised.value.status == 400
    assert raised.value.reason == "PICKUP_CODE_MISMATCH"
    assert "wrong code" in str(raised.value)


def test_keys_and_tokens_travel_in_headers_and_empty_params_stay_out() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with _client(handler) as http:
        assert Api(http, key="pk_web", token="t0k").get("/v1/x", a="1", b=None) == {"ok": True}
    assert seen[0].headers["x-api-key"] == "pk_web"
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert seen[0].url.params.multi_items() == [("a", "1")]


def test_a_rate_limited_call_is_retried_after_its_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(demo_api.time, "sleep", slept.append)
    answers = iter(
        [
            httpx.Response(429, headers={"retry-after": "3"}, json={}),
            httpx.Response(200, json={"n": 1}),
        ]
    )

    with _client(lambda request: next(answers)) as http:
        assert Api(http).post("/v1/identity:signIn", {}) == {"n": 1}
    assert slept == [3.0]


def test_a_gateway_that_does_not_answer_is_unreachable_not_a_crash() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with _client(handler) as http, pytest.raises(Unreachable, match="does not answer"):
        Api(http).get("/v1/carts:active")


def test_server_sent_events_are_parsed_as_the_gateway_writes_them() -> None:
    body = [
        ": keep-alive",
        "",
        f"data: {json.dumps({'order': {'id': 'o1'}})}",
        "",
        "event: error",
        'data: {"error": {"code": 404}}',
        "",
        "data: {}",
    ]
    assert list(_events(iter(body))) == [
        ("message", '{"order": {"id": "o1"}}'),
        ("error", '{"error": {"code": 404}}'),
    ]
