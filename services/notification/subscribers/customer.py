"""Customer events that read the same on either customer contract: the consent
projection, erasure, and the engagement events that start journeys (``BirthdayReached``,
``SegmentEntered``, ``SegmentExited``; their fields — ``segment``, ``year`` — are what a
journey's ``trigger_match`` looks at). An event with a malformed customer id is
InvalidArgument, which the kit's consumer logs and skips (it could never succeed)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notification.subscribers.commerce import event_fields
from services.notification.usecases.journeys import Journeys
from services.notification.usecases.recipients import Recipients
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.db import UnitOfWork
from tenpo.kit.events import Event, Subscription
from tenpo.kit.wire import parse_id


def customer_subscription(
    recipients: Recipients, journeys: Journeys, durable: str = "notification-customer"
) -> Subscription:
    async def consent_changed(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(customer_events.ConsentChanged)
        changed = message.consent.update_time
        at = (
            changed.ToDatetime(tzinfo=UTC)
            if changed.seconds
            else event.occurred_at or datetime.now(UTC)
        )
        customer_id = parse_id(message.customer_id, "customer_id")
        await recipients.consent_changed(
            uow,
            customer_id,
            message.consent.purpose,
            message.consent.channel,
            message.consent.status,
            at,
        )
        await journeys.on_event(
            uow, event.event_type, customer_id, str(event.id), event.occurred_at
        )

    async def erased(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(customer_events.CustomerErased)
        customer_id = parse_id(message.customer_id, "customer_id")
        await recipients.erase(uow, customer_id)
        await journeys.customer_erased(uow, customer_id)

    async def engagement(uow: UnitOfWork, event: Event) -> None:
        fields = event_fields(event) or {}
        customer_id = parse_id(str(fields.get("customer_id", "")), "customer_id")
        await journeys.on_event(
            uow, event.event_type, customer_id, str(event.id), event.occurred_at, data=fields
        )

    return Subscription(
        durable=durable,
        source_service="customer",
        handlers={
            customer_events.ConsentChanged: consent_changed,
            customer_events.CustomerErased: erased,
            customer_events.BirthdayReached: engagement,
            customer_events.SegmentEntered: engagement,
            customer_events.SegmentExited: engagement,
        },
    )
