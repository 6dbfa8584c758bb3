"""What the use cases need of a channel provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ProviderUnavailable(Exception):
    """The provider did not answer or asked to retry: try again later."""


class ProviderRejected(Exception):
    """The provider refused the message for good (bad address, blocked)."""


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


class EmailSender(Protocol):
    async def send(self, mail: OutgoingEmail) -> str:
        """Hand the mail over; returns the provider's id of it."""
        ...


class SmsSender(Protocol):
    async def send(self, to: str, text: str) -> str: ...


class PushSender(Protocol):
    async def send(self, subscription: dict[str, object], title: str, body: str) -> str: ...
