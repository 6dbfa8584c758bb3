"""Web Push with VAPID through pywebpush, against a local fake push service: the payload is
encrypted for the subscription (aes128gcm) and the request carries a VAPID signature."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.notification.providers.ports import ProviderRejected
from services.notification.providers.push import WebPush


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakePushService:
    def __init__(self) -> None:
        self.status = 201
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(fake.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def push_service() -> Iterator[FakePushService]:
    fake = FakePushService()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def subscription(port: int) -> dict[str, object]:
    receiver = ec.generate_private_key(ec.SECP256R1())
    public = receiver.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": f"http://127.0.0.1:{port}/push/abc",
        "keys": {"p256dh": _b64(public), "auth": _b64(os.urandom(16))},
    }


def vapid_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


async def test_push_is_encrypted_and_vapid_signed(push_service: FakePushService) -> None:
    sender = WebPush(vapid_private_key=vapid_key(), subject="mailto:ops@tenpo.test")
    assert await sender.send(
        subscription(push_service.port), "注文", "お受け取りの準備ができました"
    )
    [(path, headers, body)] = push_service.requests
    assert path == "/push/abc"
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-encoding"] == "aes128gcm"
    assert lowered["authorization"].startswith("vapid t=")
    assert "お受け取り".encode() not in body  # encrypted, not in clear


async def test_gone_subscription_is_rejected(push_service: FakePushService) -> None:
    push_service.status = 410
    sender = WebPush(vapid_private_key=vapid_key(), subject="mailto:ops@tenpo.test")
    with pytest.raises(ProviderRejected):
        await sender.send(subscription(push_service.port), "t", "b")
