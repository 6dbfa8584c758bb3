"""The demo promotions are valid, and the personal-code promotions the notification seed's
journeys name (birthday, welcome) are the cart seed's code promotions."""

from __future__ import annotations

import uuid

from services.cart.domain.promotions import Trigger
from services.cart.seed import DEMO_PROMOTIONS
from services.notification.config import DEMO_PERSONAL_CODE_PROMOTION, DEMO_WELCOME_PROMOTION


def test_every_demo_promotion_is_valid() -> None:
    for promotion in DEMO_PROMOTIONS:
        assert promotion.validate() is promotion


def test_the_journeys_promotions_issue_personal_codes() -> None:
    by_id = {promotion.id: promotion for promotion in DEMO_PROMOTIONS}
    for named in (DEMO_PERSONAL_CODE_PROMOTION, DEMO_WELCOME_PROMOTION):
        promotion = by_id[uuid.UUID(named)]
        # A code promotion with no public code: only personal codes redeem it, once each.
        assert (promotion.trigger, promotion.code) == (Trigger.CODE, None)
        assert promotion.usage_limit_per_customer == 1
