"""Cart and order events: they start, and end, journeys (abandoned cart, order confirmation,
ready for pickup, ...), and order events feed the order projection behind segments and
"bought since?". A guest's abandoned cart with a contact e-mail gets a reminder mail of its
own (journeys are per customer).

Order events are subscribed **by name**: a journey needs only the event's subject and its
fields, so an event whose proto this build does not carry yet (the order service's
fulfilment events) is listened for already, and its fields become readable as soon as the
proto is merged. The fields of an event reach the journey's messages as variables
(``order_number``, ``store_id``, ...)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from services.notification.contacts import Contacts
from services.notification.domain.templates import Channel
from services.notification.usecases.journeys import Journeys
from services.notification.usecases.messages import Messages
from tenpo.cart.v1 import events_pb2 as cart_events
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Handler, Subscription
from tenpo.order.v1 import events_pb2 as order_events

log = logging.getLogger(__name__)

ORDER_PLACED = order_events.OrderPlaced.DESCRIPTOR.full_name
#: The order events journeys may start on or exit by (issue 13's names).
ORDER_EVENTS = tuple(
    f"tenpo.order.v1.{name}"
    for name in (
        "OrderPlaced",
        "OrderCancelled",
        "ReadyForPickup",
        "FulfillmentShipped",
        "FulfillmentDelivered",
        "PickedUp",
        "OrderCompleted",
    )
)
#: Fields never copied into a run's variables: lists (lines) say nothing a short message
#: needs, and a bounded run row is worth more.
_MAX_FIELD = 200
#: SKUs of an event's lines kept as the ``skus`` variable (complementary products).
_MAX_SKUS = 20
#: A nested message whose fields also read unprefixed: a fulfilment event's reference names
#: the order and its customer (``order_number``, ``customer_id``) like an order event.
_LIFTED = "fulfillment"


def event_fields(event: Event) -> dict[str, Any] | None:
    """The event's fields by name (top-level scalars; one level of a nested message as
    ``outer_inner``, a fulfilment reference's also unprefixed; the SKUs of its ``lines`` as
    ``skus``), when this build carries its proto; None when it does not."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(event.event_type)
    except KeyError:
        return None
    message = message_factory.GetMessageClass(descriptor).FromString(event.payload)
    fields: dict[str, Any] = {}
    as_dict = MessageToDict(message, preserving_proto_field_name=True)
    lifted: dict[str, Any] = {}
    for name, value in as_dict.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, str | int | float | bool):
                    fields[f"{name}_{inner}"] = inner_value
                    if name == _LIFTED:
                        lifted[inner] = inner_value
        elif isinstance(value, str | int | float | bool):
            fields[name] = value
        elif name == "lines" and isinstance(value, list):
            skus = [str(line["sku"]) for line in value if isinstance(line, dict) and "sku" in line]
            fields["skus"] = [sku[:_MAX_FIELD] for sku in skus[:_MAX_SKUS]]
    fields = lifted | fields
    return {k: v[:_MAX_FIELD] if isinstance(v, str) else v for k, v in fields.items()}


def _customer(fields: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(fields.get("customer_id", "")))
    except ValueError:
        return None  # a guest: no customer to write to


#: The reminder a guest who left her e-mail on her cart gets (no personal code: those are
#: issued to customers).
GUEST_CART_TEMPLATE = "cart_abandoned_guest"


def cart_subscription(
    journeys: Journeys,
    durable: str = "notification-cart",
    messages: Messages | None = None,
    guests: Contacts | None = None,
) -> Subscription:
    async def abandoned(uow: UnitOfWork, event: Event) -> None:
        fields = event_fields(event) or {}
        customer_id = _customer(fields)
        if customer_id is None:
            await guest_abandoned(uow, event, fields)
            return
        await journeys.on_event(
            uow, event.event_type, customer_id, str(event.id), event.occurred_at, data=fields
        )

    async def guest_abandoned(uow: UnitOfWork, event: Event, fields: dict[str, Any]) -> None:
        """A guest's cart: a reminder only if she left an e-mail, which the cart service
        gives this service (the event does not carry it). A cart service that does not
        answer raises Unavailable: the event is delivered again later."""
        if not fields.get("has_contact_email") or messages is None or guests is None:
            return  # nobody to write to
        email = await guests.contact_email(str(fields.get("cart_id", "")))
        if not email:
            return  # the cart, or its e-mail, is gone
        await messages.compose(
            uow,
            customer_id=None,
            template_key=GUEST_CART_TEMPLATE,
            channel=Channel.EMAIL,
            data={k: v for k, v in fields.items() if k in ("cart_id", "skus")},
            dedupe_key=f"event:{event.id}",
            guest_email=email,
        )

    return Subscription(
        durable=durable,
        source_service="cart",
        handlers={cart_events.CartAbandoned: abandoned},
    )


def order_subscription(
    journeys: Journeys,
    durable: str = "notification-order",
    event_types: tuple[str, ...] = ORDER_EVENTS,
    more: Mapping[type[Message] | str, Handler] | None = None,
) -> Subscription:
    """Order events for journeys and the projection; ``more``: other handlers on the same
    durable consumer (the return mails of ``subscribers/returns.py``)."""

    async def order_event(uow: UnitOfWork, event: Event) -> None:
        fields = event_fields(event)
        if fields is None:
            # Published by a newer order service than this build: acknowledged, said once
            # per event, and handled by the next build that carries the proto.
            log.warning("order event of an unknown type skipped", extra={"type": event.event_type})
            return
        customer_id = _customer(fields)
        if customer_id is None:
            return
        if event.event_type == ORDER_PLACED:
            await journeys.order_placed(uow, customer_id, event.occurred_at)
        await journeys.on_event(
            uow, event.event_type, customer_id, str(event.id), event.occurred_at, data=fields
        )

    return Subscription(
        durable=durable,
        source_service="order",
        handlers={**dict.fromkeys(event_types, order_event), **(more or {})},
    )
