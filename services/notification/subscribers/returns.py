"""Returns by mail reach the customer: ``ReturnAuthorized`` queues the transactional mail
``return_authorized`` (the order, the authorization's number for the parcel, the units
authorized, where the parcel goes and by when) and ``ReturnAuthorizationCancelled`` the
short ``return_authorization_cancelled``. One mail per event (the consumer's inbox, and the
message's dedupe key ``event:<id>``). A customer's mail goes to her address from the
customer service, in her language (an unknown or erased customer: the message is skipped as
unreachable, the event acknowledged). A guest's order that announces a contact e-mail
(``has_contact_email``) is asked for it (``OrderService.GetOrder`` as this service): an order
service that does not answer makes the event come again later; an order, or address, that
is gone sends nothing. Logs name event ids only."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from services.notification.contacts import Contacts
from services.notification.domain.templates import Channel
from services.notification.usecases.messages import Messages, zone
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Handler
from tenpo.order.v1 import events_pb2 as order_events

log = logging.getLogger(__name__)

AUTHORIZED_TEMPLATE = "return_authorized"
CANCELLED_TEMPLATE = "return_authorization_cancelled"
#: Lines listed in the mail (an authorization names the order's lines: a few).
_MAX_LINES = 50


def authorized_data(event: order_events.ReturnAuthorized, time_zone: str) -> dict[str, Any]:
    """The mail's variables: the expiry as a local date and time (the parcel must arrive by
    then), the units by SKU."""
    expires: datetime = event.expire_time.ToDatetime(tzinfo=zone(time_zone, "Asia/Tokyo"))
    return {
        "order_number": event.order_number,
        "return_number": event.number,
        "expire_date": expires.strftime("%Y-%m-%d"),
        "expire_time": expires.strftime("%Y-%m-%d %H:%M"),
        "ship_to": event.ship_to,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity} for line in event.lines[:_MAX_LINES]
        ],
    }


def cancelled_data(event: order_events.ReturnAuthorizationCancelled) -> dict[str, Any]:
    return {"order_number": event.order_number, "return_number": event.number}


def return_handlers(
    messages: Messages, orders: Contacts | None, time_zone: str
) -> dict[type[Message] | str, Handler]:
    """The order consumer's handlers of the two return events."""

    async def authorized(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(order_events.ReturnAuthorized)
        await mail(uow, event, message, AUTHORIZED_TEMPLATE, authorized_data(message, time_zone))

    async def cancelled(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(order_events.ReturnAuthorizationCancelled)
        await mail(uow, event, message, CANCELLED_TEMPLATE, cancelled_data(message))

    async def mail(
        uow: UnitOfWork,
        event: Event,
        message: order_events.ReturnAuthorized | order_events.ReturnAuthorizationCancelled,
        template_key: str,
        data: dict[str, Any],
    ) -> None:
        customer_id: uuid.UUID | None = None
        guest_email = ""
        if message.customer_id:
            try:
                customer_id = uuid.UUID(message.customer_id)
            except ValueError:
                log.warning("return event for a malformed customer id", extra=_ids(event))
                return
        else:
            guest_email = await guest_address(event, message)
            if not guest_email:
                return
        await messages.compose(
            uow,
            customer_id=customer_id,
            template_key=template_key,
            channel=Channel.EMAIL,
            data=data,
            dedupe_key=f"event:{event.id}",
            guest_email=guest_email,
        )

    async def guest_address(
        event: Event,
        message: order_events.ReturnAuthorized | order_events.ReturnAuthorizationCancelled,
    ) -> str:
        """A guest order's contact e-mail, when it announces one (Unavailable: retried)."""
        if not message.has_contact_email or orders is None:
            return ""  # nobody to write to (a guest who left only a phone number)
        email = await orders.contact_email(message.order_id)
        if not email:
            log.info("guest order without a contact e-mail now", extra=_ids(event))
        return email or ""

    return {
        order_events.ReturnAuthorized: authorized,
        order_events.ReturnAuthorizationCancelled: cancelled,
    }


def _ids(event: Event) -> dict[str, str]:
    return {"event_id": str(event.id), "type": event.event_type}
