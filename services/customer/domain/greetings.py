"""Greetings domain: what a store's welcome banner may show a customer who checks in. No I/O.

Only a customer who granted personalization (on any channel) is greeted, by her given name
alone, with one suggestion: the product she last tried on or picked up (within
``RECENT_INTEREST``), else her birthday month, else a plain welcome. Nothing that identifies
her (id, family name, contact) is in a greeting, and the device is told to clear it after
``display_seconds``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from . import ConsentPurpose, ConsentState, ConsentStatus
from .timeline import Interaction, InteractionKind

GREETINGS_SCOPE = "greetings:read"
RECENT_INTEREST = timedelta(days=90)


class SuggestionReason(IntEnum):
    """Mirrors tenpo.customer.v1.SuggestionReason."""

    RECENTLY_TRIED_ON = 1
    RECENTLY_VIEWED = 2
    BIRTHDAY_MONTH = 3
    WELCOME = 4


@dataclass(frozen=True)
class Greeting:
    given_name: str
    reason: SuggestionReason
    sku: str
    checked_in_at: datetime
    display_seconds: int


def may_greet(consents: Iterable[ConsentState]) -> bool:
    return any(
        s.purpose is ConsentPurpose.PERSONALIZATION and s.status is ConsentStatus.GRANTED
        for s in consents
    )


def compose(
    given_name: str,
    recent: Iterable[Interaction],
    birthday_month: bool,
    checked_in_at: datetime,
    display_seconds: int,
) -> Greeting:
    """``recent``: her timeline, newest first."""
    for item in recent:
        if item.created_at < checked_in_at - RECENT_INTEREST:
            break
        if item.sku and item.kind is InteractionKind.MIRROR_TRY_ON:
            reason = SuggestionReason.RECENTLY_TRIED_ON
        elif item.sku and item.kind is InteractionKind.SHELF_SCAN:
            reason = SuggestionReason.RECENTLY_VIEWED
        else:
            continue
        return Greeting(given_name, reason, item.sku, checked_in_at, display_seconds)
    reason = SuggestionReason.BIRTHDAY_MONTH if birthday_month else SuggestionReason.WELCOME
    return Greeting(given_name, reason, "", checked_in_at, display_seconds)
