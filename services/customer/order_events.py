"""The order service's events as customer reads them: proto ⇄ facts (like a servicer, no
rules). A return reverses points in proportion to its ``refund`` (what it gives back), or by
units when an event carries no refund."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.customer.domain import earning as ed
from tenpo.kit.events import Event
from tenpo.kit.wire import parse_id
from tenpo.order.v1 import events_pb2 as order_events


def _customer(value: str) -> uuid.UUID:
    return parse_id(value, "customer_id")


def _when(event: Event) -> datetime:
    return event.occurred_at or datetime.now(UTC)


def order_placed(event: Event) -> ed.OrderFacts | None:
    """None for a guest order (no customer to earn)."""
    message = event.parse(order_events.OrderPlaced)
    if not message.customer_id:
        return None
    return ed.OrderFacts(
        order_id=ed.check_order_id(message.order_id, "order_id"),
        order_number=message.order_number[: ed.MAX_ID],
        customer_id=_customer(message.customer_id),
        channel=int(message.channel),
        store_id=message.store_id[: ed.MAX_ID] or None,
        total_yen=ed.order_yen(
            message.total.currency_code, message.total.units, message.total.nanos, "total"
        ),
        units=sum(max(line.quantity, 0) for line in message.lines),
        placed_at=_when(event),
    )


def order_cancelled(event: Event) -> str:
    return ed.check_order_id(event.parse(order_events.OrderCancelled).order_id, "order_id")


def return_received(event: Event) -> ed.ReturnFacts | None:
    message = event.parse(order_events.ReturnReceived)
    if not message.customer_id:
        return None
    refund: int | None = None
    if message.HasField("refund"):
        money = message.refund
        refund = ed.order_yen(money.currency_code, money.units, money.nanos, "refund")
    return ed.ReturnFacts(
        return_id=ed.check_order_id(message.return_id, "return_id"),
        order_id=ed.check_order_id(message.order_id, "order_id"),
        customer_id=_customer(message.customer_id),
        refund_yen=refund,
        units=sum(max(line.quantity, 0) for line in message.lines),
        received_at=_when(event),
    )
