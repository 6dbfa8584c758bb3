"""The seeds' journeys (issue 17), each a story told through the touchpoints it names; the
demo narrates them and `tests/journeys/` runs them as system tests — one implementation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenpo.devtools.demo.journeys.accounts import (
    consent_export_erasure,
    customer_service_360,
    points_in_store_spent_online,
)
from tenpo.devtools.demo.journeys.engagement import (
    birthday_code_for_a_viewed_product,
    segment_campaigns_and_lapsed_offer,
    thank_you_and_review_request,
)
from tenpo.devtools.demo.journeys.messages import (
    NotShown,
    abandoned_cart_code_on_another_channel,
    order_sms_in_one_segment,
    welcome_reminder_only_when_unopened,
)
from tenpo.devtools.demo.journeys.stores import (
    app_cart_continued_on_kiosk,
    click_and_collect,
    mirror_try_on_same_day,
)
from tenpo.devtools.demo.world import Shop


@dataclass(frozen=True)
class Journey:
    number: int
    title: str
    run: Callable[[Shop], None]


JOURNEYS = (
    Journey(1, "A cart begun in the app, continued on a kiosk", app_cart_continued_on_kiosk),
    Journey(2, "Click & collect: an SMS when ready, picked up with the code", click_and_collect),
    Journey(
        3,
        "Smart shelf, mirror try-ons, bought in the fitting room, same-day home",
        mirror_try_on_same_day,
    ),
    Journey(
        4,
        "Welcome mail with a code; an SMS pointing to it only when unopened",
        welcome_reminder_only_when_unopened,
    ),
    Journey(
        5,
        "Abandoned cart: a personal code, redeemed on another channel",
        abandoned_cart_code_on_another_channel,
    ),
    Journey(
        6, "Birthday: a 20 % code for a product she looked at", birthday_code_for_a_viewed_product
    ),
    Journey(
        7, "Points earned in a store, spent online, live everywhere", points_in_store_spent_online
    ),
    Journey(9, "Customer service sees the whole history", customer_service_360),
    Journey(
        8, "First-time vs loyal campaigns; the lapsed offer", segment_campaigns_and_lapsed_offer
    ),
    Journey(10, "Consent, export and erasure across every service", consent_export_erasure),
    Journey(
        11,
        "Thank-you with complementary products; a review request after delivery",
        thank_you_and_review_request,
    ),
    Journey(12, "Order SMS, each within one segment", order_sms_in_one_segment),
)
#: Issue 17's journeys not told yet, and why (the demo lists them at the end): none.
NOT_YET: dict[int, str] = {}

__all__ = ["JOURNEYS", "NOT_YET", "Journey", "NotShown"]
