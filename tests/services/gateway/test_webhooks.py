"""The carrier webhook: a signed body becomes the order service's UpdateDeliveryStatus,
called with the gateway's service token; a bad signature changes nothing."""

from __future__ import annotations

import json

import grpc

from services.gateway.webhooks import CARRIER_PATH, sign
from tenpo.devtools.keys import DevKeys
from tenpo.kit.auth import PrincipalKind, TokenVerifier, current_principal
from tenpo.kit.guard import CallGuard, GuardedServer
from tenpo.kit.settings import ServiceSettings
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import order_service_pb2_grpc as api_grpc
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens, auth_settings
from tests.services.gateway.conftest import GatewayFactory

SECRET = "carrier-test-secret-0123456789abcdef"


class FakeOrders(api_grpc.OrderServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[api.UpdateDeliveryStatusRequest, str, str]] = []

    async def UpdateDeliveryStatus(
        self, request: api.UpdateDeliveryStatusRequest, context: grpc.aio.ServicerContext
    ) -> api.UpdateDeliveryStatusResponse:
        principal = current_principal()
        assert principal.kind is PrincipalKind.SERVICE
        self.calls.append((request, principal.subject, " ".join(sorted(principal.scopes))))
        return api.UpdateDeliveryStatusResponse(order=pb.Order(id=request.order_id))


async def test_a_signed_carrier_update_reaches_the_order_service_as_a_service(
    dev_keys: DevKeys, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    verifier = TokenVerifier.from_settings(ServiceSettings(**auth_settings(dev_keys)))  # type: ignore[arg-type]
    server = grpc.aio.server()
    fake = FakeOrders()
    api_grpc.add_OrderServiceServicer_to_server(
        fake,
        GuardedServer(server, CallGuard(verifier)),  # type: ignore[arg-type]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    token = tokens.mint(subject="gateway", kind="service", scopes=["orders:write"])
    body = json.dumps(
        {
            "orderId": "8d7a3a4e-3b5c-4e0e-9a57-2c7c1f0e8b11",
            "fulfillmentId": "0b0c9f7e-8a2d-4d5e-b8c4-9f3e2a1b7c6d",
            "status": "FULFILLMENT_STATUS_DELIVERED",
            "requestId": "yamato-evt-1",
        }
    ).encode()
    try:
        async with start_gateway(
            targets={"order": f"127.0.0.1:{port}"},
            carrier_webhook_secret=SECRET,
            service_token=token,
        ) as gw:
            signed = await gw.client.post(
                CARRIER_PATH, content=body, headers={"x-tenpo-signature": sign(SECRET, body)}
            )
            forged = await gw.client.post(
                CARRIER_PATH,
                content=body.replace(b"DELIVERED", b"OUT_FOR_DELIVERY"),
                headers={"x-tenpo-signature": sign(SECRET, body)},
            )
            wrong_key = await gw.client.post(
                CARRIER_PATH, content=body, headers={"x-tenpo-signature": sign("other", body)}
            )
            unsigned = await gw.client.post(CARRIER_PATH, content=body)
            garbage = b"not json"
            bad_body = await gw.client.post(
                CARRIER_PATH, content=garbage, headers={"x-tenpo-signature": sign(SECRET, garbage)}
            )
            await server.stop(0)  # the order service goes away
            down = await gw.client.post(
                CARRIER_PATH, content=body, headers={"x-tenpo-signature": sign(SECRET, body)}
            )
    finally:
        await server.stop(0)

    assert signed.status_code == 200, signed.text
    for refused in (forged, wrong_key, unsigned):
        assert refused.status_code == 401
        assert refused.json()["error"]["details"][0]["reason"] == "SIGNATURE_INVALID"
    assert bad_body.status_code == 400
    assert down.status_code == 503
    assert down.json()["error"]["status"] == "UNAVAILABLE"
    [(request, subject, scopes)] = fake.calls  # only the signed call got through
    assert request.status == pb.FULFILLMENT_STATUS_DELIVERED
    assert request.request_id == "yamato-evt-1"
    assert (subject, scopes) == ("gateway", "orders:write")


async def test_without_a_secret_the_route_is_not_served(start_gateway: GatewayFactory) -> None:
    async with start_gateway(targets={"order": "127.0.0.1:1"}) as gw:
        response = await gw.client.post(CARRIER_PATH, content=b"{}")
    assert response.status_code == 404


async def test_a_signed_body_the_order_proto_cannot_hold_is_400_before_any_call(
    start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Found from outside: the webhook parsed its body with protobuf's JSON parser alone, so
    an enum number the proto does not define (``"status": 999``; proto3 enums are open) went
    on to the order service, and deep nesting relied on that parser's own guard. It now reads
    the body as every JSON route does (the transcoder): depth bound, an object, known enum
    values, the field named."""
    token = tokens.mint(subject="gateway", kind="service", scopes=["orders:write"])
    cases = {
        b'{"orderId": "8d7a3a4e-3b5c-4e0e-9a57-2c7c1f0e8b11", "status": 999}': "status",
        b"[" * 5000 + b"]" * 5000: "body",
        b"[]": "body",
        b'{"orderId": {"a": 1}}': "orderId",
    }
    async with start_gateway(
        targets={"order": "127.0.0.1:1"},  # nothing listens: a call would be a 503
        carrier_webhook_secret=SECRET,
        service_token=token,
    ) as gw:
        for body, field in cases.items():
            answer = await gw.client.post(
                CARRIER_PATH, content=body, headers={"x-tenpo-signature": sign(SECRET, body)}
            )
            assert answer.status_code == 400, (body[:40], answer.text)
            details = answer.json()["error"]["details"]
            assert details[0]["reason"] in ("REQUEST_INVALID", "BODY_TOO_DEEP")
            violations = [d for d in details if d["@type"].endswith("BadRequest")]
            assert violations[0]["fieldViolations"][0]["field"] == field
