"""The payment-provider port: what the saga needs from a PSP. No I/O here; adapters live in
``services.order.payments``.

Every call takes an idempotency key: a retry after a timeout (did the PSP take it or not?)
repeats the same call and gets the same outcome, never a second charge. Voiding by the
authorization's key works even when the authorize answer was lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Authorization:
    id: str
    amount: int
    currency: str
    #: Konbini: until when the payment number is accepted (None for cards).
    expires_at: datetime | None = None


class PaymentDeclined(Exception):
    """The provider said no for good: ``reason`` is PAYMENT_DECLINED, INSUFFICIENT_FUNDS..."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PaymentUnavailable(Exception):
    """The provider did not answer in time; the outcome is unknown until asked again."""


class PaymentProvider(Protocol):
    async def authorize(
        self, key: str, *, amount: int, currency: str, card_token: str
    ) -> Authorization: ...

    async def capture(self, key: str, *, authorization_key: str, amount: int) -> None: ...

    async def void(self, key: str, *, authorization_key: str) -> None:
        """Release the hold of the authorization made with ``authorization_key``; nothing
        happens when there was none (the authorize never reached the provider)."""
        ...

    async def refund(self, key: str, *, authorization_key: str, amount: int) -> None: ...
