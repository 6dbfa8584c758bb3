"""The order service's events, built from domain orders (ids, quantities, amounts; no
personal data)."""

from __future__ import annotations

from google.type import money_pb2

from services.order.domain.orders import Order
from tenpo.order.v1 import events_pb2 as ev


def money(amount: int, currency: str = "JPY") -> money_pb2.Money:
    """JPY has no minor unit: the amount is whole yen in ``units``."""
    return money_pb2.Money(currency_code=currency, units=amount)


def placed_event(order: Order) -> ev.OrderPlaced:
    return ev.OrderPlaced(
        order_id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=order.store_id or "",
        lines=[
            ev.OrderEventLine(sku=li.sku, quantity=li.quantity, location_id=li.location_id)
            for li in order.lines
        ],
        total=money(order.totals.total, order.currency),
    )


def cancelled_event(order: Order) -> ev.OrderCancelled:
    return ev.OrderCancelled(
        order_id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=order.store_id or "",
        reason=order.failure_reason,
    )
