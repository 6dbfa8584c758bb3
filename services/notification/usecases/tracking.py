"""Tracking use cases: opens, clicks (only to the URL recorded at send time) and one-click
unsubscribes, from signed tokens; providers' delivery reports."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from services.notification.domain import tracking
from services.notification.domain.journeys import Condition
from services.notification.domain.templates import Category, Channel
from services.notification.store import JourneyStore, MessageStore, RecipientStore
from services.notification.wakeup import JOURNEYS, notify
from tenpo.kit import wire
from tenpo.kit.db import Database
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound
from tenpo.notification.v1 import events_pb2 as events


def _bad_token() -> InvalidArgument:
    return InvalidArgument(
        "the tracking token is not valid",
        reason="TRACKING_TOKEN_INVALID",
        field_violations=[FieldViolation("token", "not a token of ours")],
    )


class Tracking:
    def __init__(self, db: Database, secret: bytes) -> None:
        self.db = db
        self.secret = secret

    def _read(self, kind: bytes, token: str) -> tuple[uuid.UUID, int]:
        found = tracking.verify(self.secret, kind, token)
        if found is None:
            raise _bad_token()
        return uuid.UUID(bytes=found[0]), found[1]

    async def opened(self, token: str) -> None:
        message_id, _ = self._read(tracking.OPEN, token)
        async with self.db.unit_of_work() as uow:
            row = await MessageStore(uow.session).mark_first(message_id, "opened_at")
            if row is not None:
                uow.add_event(
                    events.MessageOpened(
                        message_id=str(row.id),
                        customer_id=str(row.customer_id or ""),
                        template_key=row.template_key,
                        open_time=wire.timestamp(row.opened_at),
                    )
                )
                await JourneyStore(uow.session).wake_waiting(
                    message_id, int(Condition.LAST_MESSAGE_OPENED)
                )
                await notify(uow.session, JOURNEYS)
            await uow.commit()

    async def clicked(self, token: str) -> str:
        """The URL recorded for the link at send time; no other can be reached."""
        message_id, index = self._read(tracking.CLICK, token)
        async with self.db.unit_of_work() as uow:
            store = MessageStore(uow.session)
            url = await store.link(message_id, index)
            if url is None:
                raise NotFound("no such link", reason="LINK_NOT_FOUND")
            row = await store.mark_first(message_id, "clicked_at")
            # A click implies the mail was opened (images are often blocked).
            await store.mark_first(message_id, "opened_at")
            message = row or await store.get(message_id)
            assert message is not None  # locked by the update above
            uow.add_event(
                events.MessageClicked(
                    message_id=str(message_id),
                    customer_id=str(message.customer_id or ""),
                    template_key=message.template_key,
                    link_index=index,
                    click_time=wire.timestamp(message.clicked_at),
                )
            )
            journeys = JourneyStore(uow.session)
            for condition in (Condition.LAST_MESSAGE_CLICKED, Condition.LAST_MESSAGE_OPENED):
                await journeys.wake_waiting(message_id, int(condition))
            await notify(uow.session, JOURNEYS)
            await uow.commit()
        return url

    async def unsubscribe(self, token: str) -> None:
        message_id, _ = self._read(tracking.UNSUBSCRIBE, token)
        async with self.db.unit_of_work() as uow:
            row = await MessageStore(uow.session).get(message_id)
            if row is None or row.category != int(Category.MARKETING):
                raise _bad_token()
            if row.to_address:
                await RecipientStore(uow.session).suppress(
                    Channel(row.channel), row.to_address, "UNSUBSCRIBED", True
                )
            uow.add_event(
                events.RecipientUnsubscribed(
                    customer_id=str(row.customer_id or ""),
                    channel=row.channel,
                )
            )
            await uow.commit()


#: DeliveryStatus (tenpo.notification.v1) → what is recorded on the message.
DELIVERY_STATUSES = {1: "DELIVERED", 2: "BOUNCED", 3: "FAILED"}
MAX_PROVIDER_ID = 200


class Deliveries:
    """Provider delivery reports (the gateway verified their signature)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, channel: int, provider_id: str, status: int) -> tuple[uuid.UUID, bool]:
        """Record the report on the message; a bounce suppresses its address on the channel
        for every message. A bounce is final: a later DELIVERED for it changes nothing."""
        violations = []
        if channel not in (int(Channel.EMAIL), int(Channel.SMS)):
            violations.append(FieldViolation("channel", "EMAIL or SMS"))
        if not 0 < len(provider_id) <= MAX_PROVIDER_ID:
            violations.append(FieldViolation("provider_message_id", "1-200 characters"))
        if status not in DELIVERY_STATUSES:
            violations.append(FieldViolation("status", "DELIVERED, BOUNCED or FAILED"))
        if violations:
            raise InvalidArgument(
                "the delivery report is invalid",
                reason="DELIVERY_REPORT_INVALID",
                field_violations=violations,
            )
        name = DELIVERY_STATUSES[status]
        async with self.db.unit_of_work() as uow:
            store = MessageStore(uow.session)
            row = await store.by_provider_id(Channel(channel), provider_id)
            if row is None:
                raise NotFound("no message has this provider id", reason="MESSAGE_NOT_FOUND")
            suppressed = False
            if row.delivery_status != "BOUNCED":
                await store.update(row.id, delivery_status=name, delivery_updated_at=sa.func.now())
                if name == "BOUNCED" and row.to_address:
                    await RecipientStore(uow.session).suppress(
                        Channel(channel), row.to_address, "HARD_BOUNCE", False
                    )
                    suppressed = True
            await uow.commit()
        return row.id, suppressed
