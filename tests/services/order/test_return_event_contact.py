"""A return by mail's events say whether the order has a contact e-mail — never the
address: the notification service asks GetOrder for a guest's (events carry no personal
data)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.order.domain.fulfilments import FulfillmentLine
from services.order.domain.mail_returns import ReturnAuthorization, ReturnAuthorizationStatus
from services.order.domain.orders import Order, OrderStatus, PaymentMethod
from services.order.events import return_authorization_cancelled_event, return_authorized_event


def order(customer_id: str, contact_email: str | None) -> Order:
    return Order(
        uuid.uuid4(),
        "T-000042",
        customer_id,
        "cart-1",
        "etag",
        OrderStatus.PLACED,
        PaymentMethod.CARD,
        contact_email=contact_email,
    )


def authorization(order_id: uuid.UUID) -> ReturnAuthorization:
    return ReturnAuthorization(
        uuid.uuid4(),
        "R-000007",
        order_id,
        (FulfillmentLine("SKU-1", 2),),
        "dc-east",
        ReturnAuthorizationStatus.REQUESTED,
        datetime(2026, 12, 15, 14, 59, tzinfo=UTC),
    )


def test_the_events_announce_a_contact_email_without_carrying_it() -> None:
    guest = order("", "guest@example.jp")
    erased = order("", None)  # a guest erased since: her address is gone
    for value, expected in ((guest, True), (erased, False)):
        rma = authorization(value.id)
        authorized = return_authorized_event(value, rma)
        cancelled = return_authorization_cancelled_event(value, rma)
        assert authorized.has_contact_email is expected
        assert cancelled.has_contact_email is expected
        for event in (authorized, cancelled):
            assert b"guest@example.jp" not in event.SerializeToString()
    authorized = return_authorized_event(guest, authorization(guest.id))
    assert (authorized.number, authorized.order_number) == ("R-000007", "T-000042")
    assert [(li.sku, li.quantity) for li in authorized.lines] == [("SKU-1", 2)]
