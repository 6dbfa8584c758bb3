"""The gateway in front of the real notification service (real PostgreSQL, NATS and SMTP):
the open pixel is a real 1×1 GIF, a click is a 302 to the recorded URL and only to an
allow-listed host, and a provider's delivery callback is accepted only with a valid
HMAC signature over the raw body, then forwarded as the gateway's own service call."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any

import pytest
from openapi_spec_validator import validate

from services.gateway.notifications import PIXEL, signature
from tenpo.devtools.stack.net import free_port
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import GatewayFactory
from tests.services.notification.conftest import (  # noqa: F401 (fixtures)
    Harness,
    Stub,
    catcher,
    directory,
    eventually,
    harness,
    service_caller,
    sms,
    staff,
)

SECRET = secrets.token_urlsafe(32)


async def sent(stub: Stub, tokens: Tokens, customer: str, key: str, channel: int) -> pb.Message:
    request = api.SendMessageRequest(
        customer_id=customer,
        template_key=key,
        channel=channel,  # type: ignore[arg-type]
        request_id=str(uuid.uuid4()),
    )
    request.data.update({"order_number": "T-000009"})
    message = (await stub.SendMessage(request, metadata=service_caller(tokens))).message
    found: list[pb.Message] = []

    async def is_sent() -> None:
        got = await stub.GetMessage(api.GetMessageRequest(id=message.id), metadata=staff(tokens))
        assert got.message.status == pb.MESSAGE_STATUS_SENT
        found.append(got.message)

    await eventually(is_sent)
    return found[-1]


def gateway_settings(notification_port: int, tokens: Tokens, **more: Any) -> dict[str, Any]:
    return {
        "targets": {"notification": f"127.0.0.1:{notification_port}"},
        "provider_callback_secret": SECRET,
        "service_token": tokens.mint(
            subject="gateway", kind="service", scopes=["notifications:callbacks"]
        ),
        **more,
    }


async def test_open_pixel_is_a_gif_and_click_a_redirect_to_allowed_hosts_only(
    harness: Harness,  # noqa: F811 (the notification tests' fixture)
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    async with harness.start() as (host, stub):
        customer = harness.directory.add()
        message = await sent(stub, tokens, customer, "welcome", pb.MESSAGE_CHANNEL_EMAIL)
        mail = harness.catcher.to(harness.directory.contacts[customer].email)[0].parsed()
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        pixel = re.search(r"/v1/t/o/([A-Za-z0-9_-]+)", html)
        link = re.search(r"/v1/t/c/([A-Za-z0-9_-]+)", html)
        assert pixel and link
        async with start_gateway(**gateway_settings(host.port, tokens)) as gw:
            opened = await gw.client.get(f"/v1/t/o/{pixel.group(1)}")
            assert opened.status_code == 200
            assert opened.headers["content-type"] == "image/gif"
            assert opened.content == PIXEL
            assert opened.content[:6] == b"GIF89a"
            assert (opened.content[6:8], opened.content[8:10]) == (b"\x01\x00", b"\x01\x00")
            assert "no-store" in opened.headers["cache-control"]

            clicked = await gw.client.get(f"/v1/t/c/{link.group(1)}", follow_redirects=False)
            assert clicked.status_code == 302
            assert clicked.headers["location"] == harness.settings().shop_base_url

            tampered = await gw.client.get(f"/v1/t/c/{link.group(1)[:-2]}xx")
            assert tampered.status_code == 400
            assert tampered.json()["error"]["details"][0]["reason"] == "TRACKING_TOKEN_INVALID"
        got = await stub.GetMessage(api.GetMessageRequest(id=message.id), metadata=staff(tokens))
        assert got.message.HasField("open_time") and got.message.HasField("click_time")

        # The recorded URL's host is not on this gateway's list: no redirect.
        strict = gateway_settings(host.port, tokens, redirect_allowed_hosts=["shop.example.jp"])
        async with start_gateway(**strict) as gw:
            refused = await gw.client.get(f"/v1/t/c/{link.group(1)}", follow_redirects=False)
            assert refused.status_code == 403
            assert "location" not in refused.headers
            assert refused.json()["error"]["details"][0]["reason"] == "REDIRECT_NOT_ALLOWED"


async def test_every_malformed_tracking_token_is_400_however_long(
    harness: Harness,  # noqa: F811 (the notification tests' fixture)
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    """Short ones are refused by the notification service, long ones (beyond any token it
    issues) by the gateway before decoding or calling it: the same 400 either way."""
    async with (
        harness.start() as (host, _stub),
        start_gateway(**gateway_settings(host.port, tokens)) as gw,
    ):
        for prefix in ("/v1/t/o/", "/v1/t/c/"):
            for token in (
                "not-a-token",  # the notification service's answer
                "A" * 511,
                "A" * 513,  # just over the gateway's bound
                "%41" * 600,  # 600 characters once decoded
                "A" * 20_000,  # never decoded
                "a%2Fb",  # a "/" inside
            ):
                answer = await gw.client.get(prefix + token, follow_redirects=False)
                assert answer.status_code == 400, (prefix, len(token), answer.text)
                error = answer.json()["error"]
                assert error["details"][0]["reason"] == "TRACKING_TOKEN_INVALID"
                violations = [d for d in error["details"] if "fieldViolations" in d]
                assert violations[0]["fieldViolations"][0]["field"] == "token"


def test_allowed_hosts() -> None:
    from services.gateway.notifications import host_allowed, location

    allowed = ["shop.example.jp", ".tenpo.jp"]
    assert host_allowed("https://shop.example.jp/cart", allowed)
    assert host_allowed("https://a.tenpo.jp/x", allowed)
    assert host_allowed("https://tenpo.jp/x", allowed)
    for url in (
        "https://evil.example/?shop.example.jp",
        "https://shop.example.jp.evil.example/",
        "https://eviltenpo.jp/",
        "javascript:alert(1)",
        "//shop.example.jp/",
        "https://shop.example.jp@evil.example/",
        # Found from outside: Python reads the host after "@", browsers read "\\" as "/"
        # and go to evil.example (WHATWG URL); any user info is refused.
        "https://evil.example\\@shop.example.jp/",
        "https://evil.example%5C@shop.example.jp/",
        "https://user@shop.example.jp/",
        "https://shop.example.jp\\.evil.example/",
        "https://shop.example.jp\\@evil.example/",
        " https://evil.example\\@shop.example.jp/",
        "https://shop.example.jp\tevil/",
        "https://shop.example.jp/\x00",
        "https://shop.example.jp:99999/",
    ):
        assert not host_allowed(url, allowed), url
    assert host_allowed("https://shop.example.jp:8443/a?b=c&d=%5C#top", allowed)
    # A link written in Japanese is followed, percent-encoded (a header is ASCII).
    assert host_allowed("https://shop.example.jp/検索?q=靴", allowed)
    assert location("https://shop.example.jp/検索?q=靴#a") == (
        b"https://shop.example.jp/%E6%A4%9C%E7%B4%A2?q=%E9%9D%B4#a"
    )


async def test_a_delivery_callback_needs_the_signature_and_a_bounce_suppresses(
    harness: Harness,  # noqa: F811 (the notification tests' fixture)
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    async with harness.start() as (host, stub):
        customer = harness.directory.add(phone="+819044445555")
        message = await sent(stub, tokens, customer, "order_confirmation", pb.MESSAGE_CHANNEL_SMS)
        provider_id = f"sms-{len(harness.sms.sent)}"  # what the recording provider answered
        body = json.dumps(
            {"channel": "MESSAGE_CHANNEL_SMS", "providerMessageId": provider_id, "status": 2}
        ).encode()
        async with start_gateway(**gateway_settings(host.port, tokens)) as gw:
            for bad in (
                {},
                {"x-tenpo-signature": "sha256=00"},
                {"x-tenpo-signature": signature(b"another key of 32 characters....", body)},
            ):
                refused = await gw.client.post("/v1/deliveryCallbacks", content=body, headers=bad)
                assert refused.status_code == 401
                assert refused.json()["error"]["details"][0]["reason"] == (
                    "CALLBACK_SIGNATURE_INVALID"
                )
            got = await stub.GetMessage(
                api.GetMessageRequest(id=message.id), metadata=staff(tokens)
            )
            assert got.message.delivery_status == ""  # nothing changed

            garbage = b'{"nope": 1}'
            invalid = await gw.client.post(
                "/v1/deliveryCallbacks",
                content=garbage,
                headers={"x-tenpo-signature": signature(SECRET.encode(), garbage)},
            )
            assert invalid.status_code == 400

            accepted = await gw.client.post(
                "/v1/deliveryCallbacks",
                content=body,
                headers={"x-tenpo-signature": signature(SECRET.encode(), body)},
            )
            assert accepted.status_code == 200, accepted.text
            assert accepted.json() == {"messageId": message.id, "suppressed": True}
        got = await stub.GetMessage(api.GetMessageRequest(id=message.id), metadata=staff(tokens))
        assert got.message.delivery_status == "BOUNCED"
        listed = await stub.ListSuppressions(api.ListSuppressionsRequest(), metadata=staff(tokens))
        assert "+819044445555" in {s.address for s in listed.suppressions}


@pytest.mark.parametrize("path", ["/v1/deliveryCallbacks"])
async def test_a_callback_while_the_notification_service_is_down_is_503(
    start_gateway: GatewayFactory, tokens: Tokens, path: str
) -> None:
    body = b'{"channel": "MESSAGE_CHANNEL_SMS", "providerMessageId": "x", "status": 1}'
    dead = free_port()  # nothing listens there
    async with start_gateway(**gateway_settings(dead, tokens, backend_timeout_seconds=1.0)) as gw:
        answer = await gw.client.post(
            path, content=body, headers={"x-tenpo-signature": signature(SECRET.encode(), body)}
        )
    assert answer.status_code in (503, 504)
    assert answer.json()["error"]["status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


async def test_without_a_secret_there_is_no_callback_route(
    start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    settings = gateway_settings(free_port(), tokens, provider_callback_secret="")
    async with start_gateway(**settings) as gw:
        answer = await gw.client.post("/v1/deliveryCallbacks", content=b"{}")
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[" * 5000 + b"]" * 5000, "body"),  # was json.loads' RecursionError: 500
        (b"[]", "body"),
        (b'{"channel": "MESSAGE_CHANNEL_SMS", "providerMessageId": "x", "status": 999}', "status"),
    ],
)
async def test_a_signed_callback_that_is_no_report_is_400_and_nothing_is_called(
    start_gateway: GatewayFactory, tokens: Tokens, body: bytes, field: str
) -> None:
    """Found from outside: a signed callback nested 5,000 levels deep was a 500 (the
    RecursionError escaped the parser); a non-object or an enum number the proto does not
    define went on to the notification service. Now each is the transcoder's 400 naming the
    field, before any call (the backend here is a port nothing listens on)."""
    dead = free_port()
    async with start_gateway(**gateway_settings(dead, tokens, backend_timeout_seconds=1.0)) as gw:
        answer = await gw.client.post(
            "/v1/deliveryCallbacks",
            content=body,
            headers={"x-tenpo-signature": signature(SECRET.encode(), body)},
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["details"][0]["reason"] in ("REQUEST_INVALID", "BODY_TOO_DEEP")
    violations = [d for d in error["details"] if d["@type"].endswith("BadRequest")]
    assert violations[0]["fieldViolations"][0]["field"] == field


async def test_a_recorded_link_with_a_backslash_before_the_at_is_no_redirect(
    harness: Harness,  # noqa: F811 (the notification tests' fixture)
    start_gateway: GatewayFactory,
    tokens: Tokens,
) -> None:
    """Found from outside: a template's link ``http://evil.example\\@localhost/`` was
    recorded as is and the click answered ``302 Location`` to it, since Python's urlsplit
    names ``localhost`` its host; a browser reads the backslash as a slash and goes to
    evil.example. Replayed through the real notification service and its mail."""
    async with harness.start() as (host, stub):
        customer = harness.directory.add()
        key = f"evil-{uuid.uuid4().hex[:8]}"
        await stub.CreateTemplate(
            api.CreateTemplateRequest(
                template=pb.Template(
                    key=key,
                    channel=pb.MESSAGE_CHANNEL_EMAIL,
                    language="ja",
                    category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
                    subject="s",
                    text_body="t",
                    html_body='<html><body><a href="http://evil.example\\@localhost/x">x</a>'
                    "</body></html>",
                ),
                request_id=str(uuid.uuid4()),
            ),
            metadata=staff(tokens),
        )
        await sent(stub, tokens, customer, key, pb.MESSAGE_CHANNEL_EMAIL)
        mail = harness.catcher.to(harness.directory.contacts[customer].email)[0].parsed()
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"/v1/t/c/([A-Za-z0-9_-]+)", html)
        assert link
        async with start_gateway(**gateway_settings(host.port, tokens)) as gw:
            clicked = await gw.client.get(f"/v1/t/c/{link.group(1)}", follow_redirects=False)
    assert clicked.status_code == 403, clicked.headers.get("location")
    assert "location" not in clicked.headers
    assert clicked.json()["error"]["details"][0]["reason"] == "REDIRECT_NOT_ALLOWED"


async def test_the_openapi_document_says_pixel_gif_and_click_redirect(
    start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """The document describes what the tracking routes really answer, not a JSON body."""
    async with start_gateway(**gateway_settings(free_port(), tokens)) as gw:
        document = (await gw.client.get("/openapi.json")).json()
    validate(document)
    pixel = document["paths"]["/v1/t/o/{token}"]["get"]
    assert pixel["operationId"] == "TrackOpen"
    ok = pixel["responses"]["200"]
    assert list(ok["content"]) == ["image/gif"]
    assert ok["content"]["image/gif"]["schema"] == {"type": "string", "format": "binary"}
    assert "Cache-Control" in ok["headers"]
    click = document["paths"]["/v1/t/c/{token}"]["get"]
    assert click["operationId"] == "TrackClick"
    assert "200" not in click["responses"]
    redirect = click["responses"]["302"]
    assert "content" not in redirect
    assert redirect["headers"]["Location"]["schema"] == {"type": "string", "format": "uri"}
    # Errors stay documented as everywhere (403 is REDIRECT_NOT_ALLOWED here).
    assert click["responses"]["403"] == {"$ref": "#/components/responses/Error403"}
    # Other routes keep their JSON answer.
    journeys = document["paths"]["/v1/journeys"]["get"]["responses"]["200"]
    assert list(journeys["content"]) == ["application/json"]
