"""The cart service's events, built from domain objects (ids and quantities, no personal
data: a guest's e-mail stays here, the event only says there is one)."""

from __future__ import annotations

from datetime import datetime

from google.type import money_pb2

from services.cart.domain.carts import Cart
from tenpo.cart.v1 import events_pb2 as ev
from tenpo.kit.wire import timestamp


def money(amount: int, currency: str = "JPY") -> money_pb2.Money:
    """JPY has no minor unit: the amount is whole yen in ``units``."""
    return money_pb2.Money(currency_code=currency, units=amount)


def _lines(cart: Cart) -> list[ev.CartLine]:
    return [
        ev.CartLine(sku=line.sku, quantity=line.quantity, product_id=line.product_id)
        for line in cart.lines
    ]


def checked_out_event(cart: Cart, total: int) -> ev.CartCheckedOut:
    return ev.CartCheckedOut(
        cart_id=str(cart.id),
        order_id=cart.order_id or "",
        customer_id=cart.customer_id or "",
        lines=_lines(cart),
        total=money(total, cart.currency),
    )


def abandoned_event(cart: Cart, total: int) -> ev.CartAbandoned:
    return ev.CartAbandoned(
        cart_id=str(cart.id),
        customer_id=cart.customer_id or "",
        has_contact_email=cart.contact_email is not None,
        channel=cart.channel,  # type: ignore[arg-type]
        lines=_lines(cart),
        total=money(total, cart.currency),
        last_activity_time=timestamp(cart.last_activity_at),
    )


def redeemed_event(
    promotion_id: str, code: str | None, order_id: str, customer_id: str | None, amount: int
) -> ev.PromotionRedeemed:
    return ev.PromotionRedeemed(
        promotion_id=promotion_id,
        code=code or "",
        order_id=order_id,
        customer_id=customer_id or "",
        amount=money(amount),
    )


def personal_code_issued_event(
    promotion_id: str, customer_id: str, expires_at: datetime
) -> ev.PersonalCodeIssued:
    return ev.PersonalCodeIssued(
        promotion_id=promotion_id, customer_id=customer_id, expire_time=timestamp(expires_at)
    )
