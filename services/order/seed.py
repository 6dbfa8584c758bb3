"""Demo data for ``make run``: an order history for each demo customer across channels —
a web delivery, an app click & collect, a carry-out at a store's POS — all completed and
paid, dated in the past weeks. Development only; seeding again changes nothing.

The demo customers' ids come from ``$TENPO_DATA_DIR/dev-credentials.json``, which the
customer seed writes before this one runs (seeds run in start order). The history is
written straight into the order database as finished orders: it happened before the demo
began, so no saga runs, nothing is reserved, and no event is sent (points and segments
come from the customer seed; a return of such an order finds no authorization at the
sandbox PSP and stays PENDING — place a new order to try returns)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.order.config import OrderSettings
from services.order.domain.fulfilments import (
    FulfillmentPolicy,
    FulfillmentStatus,
    FulfillmentType,
    Fulfilment,
    PickupCodes,
    order_after,
    split,
)
from services.order.domain.orders import (
    Fulfillment,
    FulfillmentMethod,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentState,
    Totals,
    normal_email,
)
from services.order.domain.saga import SagaPhase, SagaStep
from services.order.store.fulfilments import FulfilmentStore
from services.order.store.orders import OrderStore
from tenpo.common.v1 import common_pb2
from tenpo.kit.db import Database
from tenpo.kit.settings import Environment

log = logging.getLogger(__name__)

#: Demo SKUs of the catalog seed (code-size), their titles and prices (tax included).
PRODUCTS = {
    "SNK-0101-250": ("ローカットスニーカー（ホワイト）", 8_900),
    "SNK-0202-260": ("ハイカットスニーカー（ブラック）", 9_900),
    "TEE-0103-M": ("オーガニックコットンTシャツ（ネイビー）", 2_990),
    "TEE-0201-L": ("ポケット付きTシャツ（ホワイト）", 3_990),
}
STORES = ("tokyo-shibuya", "tokyo-shinjuku", "tokyo-ginza")
#: The e-commerce fulfilment centre of the demo network (inventory seed).
FC = "fc-chiba"
SHIPPING_YEN = 550


@dataclass(frozen=True)
class DemoOrder:
    days_ago: int
    channel: int
    method: FulfillmentMethod
    payment: PaymentMethod
    lines: tuple[tuple[str, int], ...]


#: Every demo customer's history, oldest first (offset by her position, so dates differ).
HISTORY = (
    DemoOrder(
        40,
        common_pb2.CHANNEL_WEB,
        FulfillmentMethod.DELIVERY,
        PaymentMethod.CARD,
        (("SNK-0101-250", 1), ("TEE-0103-M", 2)),
    ),
    DemoOrder(
        12,
        common_pb2.CHANNEL_APP,
        FulfillmentMethod.PICKUP,
        PaymentMethod.CARD,
        (("TEE-0201-L", 1),),
    ),
    DemoOrder(
        3,
        common_pb2.CHANNEL_POS,
        FulfillmentMethod.CARRY_OUT,
        PaymentMethod.PAY_AT_STORE,
        (("SNK-0202-260", 1),),
    ),
)


def demo_customers(data_dir: str | None) -> list[dict[str, str]]:
    """(id, email) of the demo customers the customer seed recorded; none without them."""
    if not data_dir:
        return []
    try:
        document = json.loads((Path(data_dir) / "dev-credentials.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [
        {"id": str(c["id"]), "email": str(c.get("email", ""))}
        for c in document.get("customers", [])
        if c.get("id")
    ]


async def seed_demo_orders(
    settings: OrderSettings, db: Database, now: datetime | None = None
) -> int:
    """Write the demo history; the number of orders written (0 when seeded before)."""
    if settings.environment is Environment.PRODUCTION:
        raise SystemExit("refusing to seed demo orders in production")
    customers = demo_customers(os.environ.get("TENPO_DATA_DIR"))
    if not customers:
        log.info("no demo customers recorded (run the customer seed first): no demo orders")
        return 0
    codes = PickupCodes(settings.capability_secret.get_secret_value().encode())
    moment = now or datetime.now(UTC)
    written = 0
    for position, customer in enumerate(customers):
        store = STORES[position % len(STORES)]
        for n, demo in enumerate(HISTORY):
            placed_at = moment - timedelta(days=demo.days_ago + position, hours=3 * n + 2)
            if await _write(db, customer, store, n, demo, placed_at, codes):
                written += 1
    return written


async def _write(
    db: Database,
    customer: dict[str, str],
    store: str,
    n: int,
    demo: DemoOrder,
    placed_at: datetime,
    codes: PickupCodes,
) -> bool:
    order_id = uuid.uuid5(uuid.NAMESPACE_URL, f"tenpo-demo-order:{customer['id']}:{n}")
    async with db.unit_of_work() as uow:
        orders = OrderStore(uow.session)
        inserted = await orders.insert_pending(
            order_id=order_id,
            customer_id=customer["id"],
            cart_id=str(uuid.uuid5(order_id, "cart")),
            cart_etag="demo",
            payment_method=demo.payment,
            card_token="",
            request_key=f"demo:{order_id}",
            request_hash=b"demo",
            lease_owner="order-seed",
            lease=timedelta(minutes=1),
        )
        if not inserted:
            return False  # seeded before
        saga = await orders.get(order_id)
        assert saga is not None
        order = _placed(saga.order, customer, store, demo)
        location = FC if demo.method is FulfillmentMethod.DELIVERY else store
        plan = {sku: [(location, units)] for sku, units in demo.lines}
        order = order.with_ref("plan", json.dumps(plan))
        fulfilments = [
            _finished(f, placed_at, codes)
            for f in split(order, plan, placed_at, FulfillmentPolicy())
        ]
        done = order_after(order, fulfilments)
        await orders.save(
            done,
            step=SagaStep.FINISH,
            phase=SagaPhase.DONE,
            lease_owner="order-seed",
            lease=timedelta(minutes=1),
            keep_card=False,
        )
        fulfilment_store = FulfilmentStore(uow.session)
        await fulfilment_store.insert(fulfilments, placed_at)
        await orders.backdate(order_id, placed_at)
        await uow.commit()
    return True


def _placed(order: Order, customer: dict[str, str], store: str, demo: DemoOrder) -> Order:
    lines = tuple(
        OrderLine(
            sku=sku,
            product_id="",
            title=PRODUCTS[sku][0],
            quantity=units,
            unit_price=PRODUCTS[sku][1],
            discount=0,
            total=PRODUCTS[sku][1] * units,
            location_id=FC if demo.method is FulfillmentMethod.DELIVERY else store,
        )
        for sku, units in demo.lines
    )
    subtotal = sum(line.total for line in lines)
    shipping = SHIPPING_YEN if demo.method is FulfillmentMethod.DELIVERY else 0
    address: dict[str, Any] | None = None
    if demo.method is FulfillmentMethod.DELIVERY:
        # Where her parcel went, as the cart would have kept it (no phone: demo data).
        address = {
            "regionCode": "JP",
            "postalCode": "150-0041",
            "administrativeArea": "東京都",
            "locality": "渋谷区",
            "addressLines": ["神南1-2-3"],
        }
    payment_state = (
        PaymentState.DUE_AT_STORE
        if demo.payment is PaymentMethod.PAY_AT_STORE
        else PaymentState.AUTHORIZED
    )
    return replace(
        order,
        status=OrderStatus.PLACED,
        payment_state=payment_state,
        channel=demo.channel,
        store_id=None if demo.channel == common_pb2.CHANNEL_WEB else store,
        lines=lines,
        fulfillment=Fulfillment(
            demo.method, None if demo.method is FulfillmentMethod.DELIVERY else store, address
        ),
        totals=Totals(subtotal=subtotal, discount=0, shipping=shipping, total=subtotal + shipping),
        contact_email=normal_email(customer["email"]),
    )


def _finished(f: Fulfilment, placed_at: datetime, codes: PickupCodes) -> Fulfilment:
    """The fulfilment as it ended: delivered, picked up or handed over — and paid."""
    if f.status is FulfillmentStatus.PREPARING and f.type is FulfillmentType.CLICK_AND_COLLECT:
        f = f.mark_ready(placed_at + timedelta(hours=2), timedelta(days=7), codes).pick_up()
    elif f.status is FulfillmentStatus.PREPARING:
        f = f.ship("yamato", f"DEMO-{f.number}", placed_at + timedelta(hours=20))
        for status in (FulfillmentStatus.OUT_FOR_DELIVERY, FulfillmentStatus.DELIVERED):
            f = f.advance_delivery(status)
    return f.captured()
