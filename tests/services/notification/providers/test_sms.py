"""SMS through the Twilio-shaped REST adapter, against a local fake of Twilio's API."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest
import pytest_asyncio
from opentelemetry import trace

from services.notification.providers.ports import ProviderRejected, ProviderUnavailable
from services.notification.providers.sms import TwilioSms


@dataclass
class FakeTwilio:
    status: int = 201
    requests: list[tuple[str, dict[str, str], dict[str, list[str]]]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *lines = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((request_line, headers, parse_qs(body.decode())))
        payload = json.dumps({"sid": "SM123"} if self.status < 300 else {"code": 21211}).encode()
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()


@pytest_asyncio.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def adapter(port: int) -> TwilioSms:
    return TwilioSms(
        base_url=f"http://127.0.0.1:{port}",
        account_sid="AC1",
        auth_token="secret",
        sender="+15005550006",
        timeout_seconds=2,
    )


async def test_sends_a_form_post_with_basic_auth(twilio: FakeTwilio) -> None:
    sms = adapter(twilio.port)
    assert await sms.send("+819012345678", "ご注文を承りました") == "SM123"
    await sms.close()
    [(line, headers, form)] = twilio.requests
    assert line == "POST /2010-04-01/Accounts/AC1/Messages.json HTTP/1.1"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"AC1:secret").decode()
    assert form == {
        "To": ["+819012345678"],
        "From": ["+15005550006"],
        "Body": ["ご注文を承りました"],
    }


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ProviderRejected), (503, ProviderUnavailable), (429, ProviderUnavailable)],
)
async def test_errors(twilio: FakeTwilio, status: int, error: type[Exception]) -> None:
    twilio.status = status
    sms = adapter(twilio.port)
    with pytest.raises(error):
        await sms.send("+819012345678", "x")
    await sms.close()


async def test_the_request_carries_the_current_trace(twilio: FakeTwilio) -> None:
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
            span_id=0x00F067AA0BA902B7,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    sms = adapter(twilio.port)
    with trace.use_span(parent):
        await sms.send("+819012345678", "x")
    await sms.send("+819012345678", "outside any trace")
    await sms.close()
    inside, outside = (headers for _, headers, _ in twilio.requests)
    assert inside["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert "traceparent" not in outside
