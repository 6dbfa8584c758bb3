"""Demo promotions of 「みなと屋」 (Minatoya): a public winter code, an app-only code, an
automatic amount off large baskets, and two promotions for personal codes (birthday; the
welcome mail's first purchase). Fixed ids, so seeding again changes nothing."""

from __future__ import annotations

import uuid

from services.cart.domain.promotions import DiscountKind, Promotion, Trigger
from services.cart.store.promotions import PromotionStore
from tenpo.common.v1 import common_pb2
from tenpo.kit.db import Database

_NS = uuid.UUID("5b7c1a52-8d0e-4f4e-9a51-0c8f3f6d2e10")


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


DEMO_PROMOTIONS = (
    Promotion(
        id=_id("winter10"),
        title="冬のクーポン 10% オフ (WINTER10)",
        trigger=Trigger.CODE,
        kind=DiscountKind.PERCENT,
        code="WINTER10",
        percent_off=10,
        minimum_subtotal=3000,
        priority=100,
    ),
    Promotion(
        id=_id("app500"),
        title="アプリ限定 ¥500 オフ (APP500)",
        trigger=Trigger.CODE,
        kind=DiscountKind.AMOUNT,
        code="APP500",
        amount_off=500,
        minimum_subtotal=5000,
        channels=frozenset({common_pb2.CHANNEL_APP}),
        usage_limit_per_customer=1,
        priority=110,
    ),
    Promotion(
        id=_id("big-basket"),
        title="¥20,000 以上のお買い上げで ¥1,000 引き",
        trigger=Trigger.AUTOMATIC,
        kind=DiscountKind.AMOUNT,
        amount_off=1000,
        minimum_subtotal=20000,
        priority=200,
    ),
    Promotion(
        id=_id("birthday"),
        title="お誕生日クーポン 20% オフ",
        trigger=Trigger.CODE,
        kind=DiscountKind.PERCENT,
        percent_off=20,
        usage_limit_per_customer=1,
        priority=50,
        stop_further=True,
    ),
    # The welcome journey's personal code (notification's welcome_promotion_id): issued to
    # each new customer, used once.
    Promotion(
        id=_id("welcome"),
        title="ようこそクーポン はじめてのお買い物 10% オフ",
        trigger=Trigger.CODE,
        kind=DiscountKind.PERCENT,
        percent_off=10,
        usage_limit_per_customer=1,
        priority=60,
        stop_further=True,
    ),
)


async def seed_demo_promotions(db: Database) -> None:
    async with db.unit_of_work() as uow:
        store = PromotionStore(uow.session)
        for promotion in DEMO_PROMOTIONS:
            if await store.get(promotion.id) is None:
                await store.insert(promotion.validate())
        await uow.commit()
