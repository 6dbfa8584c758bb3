"""Web Push with VAPID (pywebpush), and a development sink."""

from __future__ import annotations

import asyncio
import json
import uuid

from services.notification.providers.ports import ProviderRejected, ProviderUnavailable


class WebPush:
    def __init__(self, *, vapid_private_key: str, subject: str, timeout_seconds: float = 10.0):
        self.vapid_private_key = vapid_private_key
        self.subject = subject
        self.timeout_seconds = timeout_seconds

    def _vapid(self) -> object:
        from py_vapid import Vapid  # type: ignore[import-untyped]

        key = self.vapid_private_key.strip()
        if key.startswith("-----BEGIN"):
            return Vapid.from_pem(key.encode())
        return Vapid.from_string(key)  # base64url DER, as `vapid --gen` prints it

    async def send(self, subscription: dict[str, object], title: str, body: str) -> str:
        from pywebpush import WebPushException, webpush  # type: ignore[import-untyped]

        def post() -> object:
            return webpush(
                subscription_info=subscription,
                data=json.dumps({"title": title, "body": body}),
                vapid_private_key=self._vapid(),
                vapid_claims={"sub": self.subject},
                timeout=self.timeout_seconds,
            )

        try:
            # pywebpush is synchronous (requests): off the event loop.
            await asyncio.to_thread(post)
        except WebPushException as error:
            status = getattr(error.response, "status_code", 0) or 0
            if status in (404, 410) or (400 <= status < 500 and status != 429):
                raise ProviderRejected(f"HTTP {status}") from error
            raise ProviderUnavailable(f"HTTP {status}") from error
        except OSError as error:
            raise ProviderUnavailable(type(error).__name__) from error
        return f"push-{uuid.uuid4()}"


class PushSink:
    async def send(self, subscription: dict[str, object], title: str, body: str) -> str:
        return f"sink-{uuid.uuid4()}"
