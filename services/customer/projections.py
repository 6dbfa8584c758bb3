"""Other services' events as timeline entries: proto ⇄ facts only (like a servicer, no rules).

Every entry carries ids and words, never personal data: the order number, a cart's size, a
message's template key and channel. The entry's id is derived from the event id, so a
redelivered event inserts nothing twice even outside the consumer's own bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.customer.domain import timeline as td
from tenpo.cart.v1 import events_pb2 as cart_events
from tenpo.kit.events import Event
from tenpo.notification.v1 import events_pb2 as notification_events
from tenpo.notification.v1 import resources_pb2 as notification_pb
from tenpo.order.v1 import events_pb2 as order_events

#: Namespace of the entry ids derived from event ids.
ENTRY_NAMESPACE = uuid.UUID("4f7c6a52-1f0e-4a53-9a8e-5b1f3d2c7e10")
MAX_REFERENCE = 128
MAX_SUMMARY = 200


@dataclass(frozen=True)
class Projected:
    """A timeline entry an event makes, before the customer is looked up."""

    entry_id: uuid.UUID
    customer_ref: str
    kind: td.InteractionKind
    summary: str
    reference: str
    channel: int
    store_id: str | None
    at: datetime


def _at(event: Event, stamp: Timestamp | None = None) -> datetime:
    if stamp is not None and (stamp.seconds or stamp.nanos):
        return stamp.ToDatetime(tzinfo=UTC)
    return event.occurred_at or datetime.now(UTC)


def _entry(
    event: Event,
    customer_ref: str,
    kind: td.InteractionKind,
    summary: str,
    reference: str,
    *,
    channel: int = 0,
    store_id: str = "",
    stamp: Timestamp | None = None,
) -> Projected:
    return Projected(
        entry_id=uuid.uuid5(ENTRY_NAMESPACE, str(event.id)),
        customer_ref=customer_ref.strip(),
        kind=kind,
        summary=" ".join(summary.split())[:MAX_SUMMARY],
        reference=reference.strip()[:MAX_REFERENCE],
        channel=channel,
        store_id=store_id.strip()[:MAX_REFERENCE] or None,
        at=_at(event, stamp),
    )


# ---------------------------------------------------------------------------------- order


def _order(verb: str, message_type: type[Message]) -> Callable[[Event], Projected]:
    """Order-level events (placed, cancelled, completed, returned, refunded)."""

    def read(event: Event) -> Projected:
        m: Message = event.parse(message_type)
        number = getattr(m, "order_number", "") or getattr(m, "order_id", "")
        return _entry(
            event,
            m.customer_id,  # type: ignore[attr-defined]
            td.InteractionKind.ORDER,
            f"{verb} {number}",
            m.order_id,  # type: ignore[attr-defined]
            channel=int(m.channel),  # type: ignore[attr-defined]
            store_id=m.store_id,  # type: ignore[attr-defined]
        )

    return read


def _fulfillment(verb: str, message_type: type[Message]) -> Callable[[Event], Projected]:
    """Fulfilment events (ready for pickup, picked up, pickup expired, shipped, delivered)."""

    def read(event: Event) -> Projected:
        ref = event.parse(message_type).fulfillment  # type: ignore[attr-defined]
        return _entry(
            event,
            ref.customer_id,
            td.InteractionKind.ORDER,
            f"{verb} {ref.fulfillment_number or ref.order_number}",
            ref.order_id,
            channel=int(ref.channel),
            store_id=ref.store_id,
        )

    return read


ORDER_EVENTS: dict[type[Message], Callable[[Event], Projected]] = {
    order_events.OrderPlaced: _order("PLACED", order_events.OrderPlaced),
    order_events.OrderCancelled: _order("CANCELLED", order_events.OrderCancelled),
    order_events.OrderCompleted: _order("COMPLETED", order_events.OrderCompleted),
    order_events.ReturnReceived: _order("RETURNED", order_events.ReturnReceived),
    order_events.RefundIssued: _order("REFUNDED", order_events.RefundIssued),
    order_events.ReadyForPickup: _fulfillment("READY_FOR_PICKUP", order_events.ReadyForPickup),
    order_events.PickedUp: _fulfillment("PICKED_UP", order_events.PickedUp),
    order_events.PickupExpired: _fulfillment("PICKUP_EXPIRED", order_events.PickupExpired),
    order_events.FulfillmentShipped: _fulfillment("SHIPPED", order_events.FulfillmentShipped),
    order_events.FulfillmentDelivered: _fulfillment("DELIVERED", order_events.FulfillmentDelivered),
}


# ----------------------------------------------------------------------------------- cart


def cart_abandoned(event: Event) -> Projected:
    m = event.parse(cart_events.CartAbandoned)
    units = sum(max(line.quantity, 0) for line in m.lines)
    return _entry(
        event,
        m.customer_id,
        td.InteractionKind.CART,
        f"ABANDONED {units} item(s)",
        m.cart_id,
        channel=int(m.channel),
        stamp=m.last_activity_time,
    )


def cart_checked_out(event: Event) -> Projected:
    m = event.parse(cart_events.CartCheckedOut)
    return _entry(
        event, m.customer_id, td.InteractionKind.CART, f"CHECKED_OUT {m.order_id}", m.cart_id
    )


CART_EVENTS: dict[type[Message], Callable[[Event], Projected]] = {
    cart_events.CartAbandoned: cart_abandoned,
    cart_events.CartCheckedOut: cart_checked_out,
}


# --------------------------------------------------------------------------- notification


def _medium(channel: int) -> str:
    if channel not in notification_pb.MessageChannel.values():
        return str(channel) if channel else ""  # a newer producer's channel
    name = notification_pb.MessageChannel.Name(channel)  # type: ignore[arg-type]
    return name.removeprefix("MESSAGE_CHANNEL_")


def message_sent(event: Event) -> Projected:
    m = event.parse(notification_events.MessageSent)
    summary = f"SENT {m.template_key} {_medium(int(m.channel))}"
    return _entry(
        event, m.customer_id, td.InteractionKind.MESSAGE, summary, m.message_id, stamp=m.send_time
    )


def message_opened(event: Event) -> Projected:
    m = event.parse(notification_events.MessageOpened)
    return _entry(
        event,
        m.customer_id,
        td.InteractionKind.MESSAGE,
        f"OPENED {m.template_key}",
        m.message_id,
        stamp=m.open_time,
    )


def message_clicked(event: Event) -> Projected:
    m = event.parse(notification_events.MessageClicked)
    return _entry(
        event,
        m.customer_id,
        td.InteractionKind.MESSAGE,
        f"CLICKED {m.template_key} link {m.link_index}",
        m.message_id,
        stamp=m.click_time,
    )


NOTIFICATION_EVENTS: dict[type[Message], Callable[[Event], Projected]] = {
    notification_events.MessageSent: message_sent,
    notification_events.MessageOpened: message_opened,
    notification_events.MessageClicked: message_clicked,
}

#: Every reader by event type name (an event's ``event_type``).
READERS: dict[str, Callable[[Event], Projected]] = {
    message_type.DESCRIPTOR.full_name: reader
    for table in (ORDER_EVENTS, CART_EVENTS, NOTIFICATION_EVENTS)
    for message_type, reader in table.items()
}


def read(event: Event) -> Projected:
    return READERS[event.event_type](event)
