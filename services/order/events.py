"""The order service's events, built from domain orders (ids, quantities, amounts; no
personal data)."""

from __future__ import annotations

from typing import Any

from google.type import money_pb2

from services.order.domain.mail_returns import ReturnAuthorization
from services.order.domain.orders import Order
from tenpo.kit.wire import timestamp
from tenpo.order.v1 import events_pb2 as ev


def money(amount: int, currency: str = "JPY") -> money_pb2.Money:
    """JPY has no minor unit: the amount is whole yen in ``units``."""
    return money_pb2.Money(currency_code=currency, units=amount)


def _about(order: Order) -> dict[str, Any]:
    """What every order event says of its order: ids, number, channel and store."""
    return {
        "order_id": str(order.id),
        "order_number": order.number,
        "customer_id": order.customer_id,
        "channel": order.channel,
        "store_id": order.store_id or "",
    }


def placed_event(order: Order) -> ev.OrderPlaced:
    return ev.OrderPlaced(
        **_about(order),
        lines=[
            ev.OrderEventLine(sku=li.sku, quantity=li.quantity, location_id=li.location_id)
            for li in order.lines
        ],
        total=money(order.totals.total, order.currency),
    )


def cancelled_event(order: Order) -> ev.OrderCancelled:
    return ev.OrderCancelled(
        **_about(order),
        reason=order.failure_reason,
    )


def return_authorized_event(order: Order, value: ReturnAuthorization) -> ev.ReturnAuthorized:
    return ev.ReturnAuthorized(
        **_about(order),
        return_authorization_id=str(value.id),
        number=value.number,
        lines=[
            ev.OrderEventLine(sku=line.sku, quantity=line.quantity, location_id=value.ship_to)
            for line in value.lines
        ],
        ship_to=value.ship_to,
        expire_time=timestamp(value.expires_at),
        reason=value.reason,
        has_contact_email=bool(order.contact_email),
    )


def return_authorization_cancelled_event(
    order: Order, value: ReturnAuthorization
) -> ev.ReturnAuthorizationCancelled:
    return ev.ReturnAuthorizationCancelled(
        **_about(order),
        return_authorization_id=str(value.id),
        number=value.number,
        has_contact_email=bool(order.contact_email),
    )
