"""The order service's fulfilment events (ids, store, channel; no personal data, never a
pickup code)."""

from __future__ import annotations

from google.protobuf.message import Message

from services.order.domain.fulfilments import Fulfilment
from services.order.domain.orders import Order, OrderStatus
from services.order.events import cancelled_event, money
from tenpo.kit.wire import timestamp
from tenpo.order.v1 import events_pb2 as ev


def ref(order: Order, fulfilment: Fulfilment) -> ev.FulfillmentRef:
    return ev.FulfillmentRef(
        order_id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        channel=order.channel,  # type: ignore[arg-type]
        fulfillment_id=str(fulfilment.id),
        fulfillment_number=fulfilment.number,
        store_id=fulfilment.store_id,
    )


def captured(order: Order, fulfilment: Fulfilment) -> ev.PaymentCaptured:
    return ev.PaymentCaptured(
        fulfillment=ref(order, fulfilment), amount=money(fulfilment.amount, order.currency)
    )


def ready(order: Order, fulfilment: Fulfilment) -> ev.ReadyForPickup:
    return ev.ReadyForPickup(
        fulfillment=ref(order, fulfilment), hold_until=timestamp(fulfilment.hold_until)
    )


def picked_up(order: Order, fulfilment: Fulfilment) -> ev.PickedUp:
    return ev.PickedUp(fulfillment=ref(order, fulfilment))


def expired(order: Order, fulfilment: Fulfilment) -> ev.PickupExpired:
    return ev.PickupExpired(fulfillment=ref(order, fulfilment))


def shipped(order: Order, fulfilment: Fulfilment) -> ev.FulfillmentShipped:
    return ev.FulfillmentShipped(
        fulfillment=ref(order, fulfilment),
        carrier=fulfilment.carrier,
        tracking_number=fulfilment.tracking_number,
    )


def delivered(order: Order, fulfilment: Fulfilment) -> ev.FulfillmentDelivered:
    return ev.FulfillmentDelivered(fulfillment=ref(order, fulfilment))


def order_progress(before: Order, after: Order) -> list[Message]:
    """The order-level event of a change its fulfilments made, if any."""
    if before.status is after.status:
        return []
    if after.status is OrderStatus.COMPLETED:
        return [
            ev.OrderCompleted(
                order_id=str(after.id),
                order_number=after.number,
                customer_id=after.customer_id,
                channel=after.channel,  # type: ignore[arg-type]
                store_id=after.store_id or "",
            )
        ]
    if after.status is OrderStatus.CANCELLED:
        return [cancelled_event(after)]
    return []
