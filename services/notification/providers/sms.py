"""SMS through Twilio's REST API (``POST /2010-04-01/Accounts/{sid}/Messages.json``, basic
auth, form body; the request carries the current trace as W3C ``traceparent``, so the
provider call is part of the trace of the event that caused it), and a development sink
that only records."""

from __future__ import annotations

import uuid

import httpx
from opentelemetry import propagate

from services.notification.providers.ports import ProviderRejected, ProviderUnavailable


class TwilioSms:
    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.account_sid = account_sid
        self.sender = sender
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=(account_sid, auth_token),
            timeout=timeout_seconds,
        )

    async def send(self, to: str, text: str) -> str:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        try:
            response = await self._client.post(
                f"/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                data={"To": to, "From": self.sender, "Body": text},
                headers=headers,
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(type(error).__name__) from error
        if response.status_code == 429 or response.status_code >= 500:
            raise ProviderUnavailable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ProviderRejected(f"HTTP {response.status_code}")
        return str(response.json().get("sid", ""))

    async def close(self) -> None:
        await self._client.aclose()


class SmsSink:
    """Development: the message is only recorded (the inbox lists it)."""

    async def send(self, to: str, text: str) -> str:
        return f"sink-{uuid.uuid4()}"
