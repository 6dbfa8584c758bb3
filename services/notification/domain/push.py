"""Push subscriptions: what a browser's PushSubscription gives, validated (pure)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from tenpo.kit.errors import FieldViolation, InvalidArgument

MAX_PER_CUSTOMER = 10
MAX_ENDPOINT = 1000
MAX_LABEL = 100


@dataclass(frozen=True)
class PushSubscription:
    endpoint: str
    p256dh: str
    auth: str
    device_label: str = ""
    id: uuid.UUID | None = None
    created_at: datetime | None = None

    def as_provider_info(self) -> dict[str, object]:
        """What pywebpush takes (the browser's PushSubscription JSON)."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _key(value: str, expected_bytes: int) -> bool:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) == expected_bytes


def validate(s: PushSubscription) -> PushSubscription:
    violations = []
    parts = urlsplit(s.endpoint)
    if len(s.endpoint) > MAX_ENDPOINT or parts.scheme != "https" or not parts.hostname:
        violations.append(
            FieldViolation("subscription.endpoint", "an https URL of at most 1000 characters")
        )
    if not _key(s.p256dh, 65):  # an uncompressed P-256 point
        violations.append(FieldViolation("subscription.p256dh", "base64url of 65 bytes"))
    if not _key(s.auth, 16):
        violations.append(FieldViolation("subscription.auth", "base64url of 16 bytes"))
    if len(s.device_label) > MAX_LABEL:
        violations.append(FieldViolation("subscription.device_label", "at most 100 characters"))
    if violations:
        raise InvalidArgument(
            "the push subscription is invalid",
            reason="PUSH_SUBSCRIPTION_INVALID",
            field_violations=violations,
        )
    return s
