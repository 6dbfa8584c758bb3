"""Recipient use cases: contact details (a copy fetched from the customer service), the
consent projection, suppressions, erasure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.notification.customers import CustomerDirectory
from services.notification.domain.templates import Channel
from services.notification.push_store import PushStore
from services.notification.store import ContactRow, MessageStore, RecipientStore
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound

MAX_ADDRESS = 320
SUPPRESSION_REASONS = ("UNSUBSCRIBED", "HARD_BOUNCE", "COMPLAINT", "MANUAL")


class Recipients:
    def __init__(self, db: Database, directory: CustomerDirectory, default_time_zone: str) -> None:
        self.db = db
        self.directory = directory
        self.default_time_zone = default_time_zone

    async def contact(self, uow: UnitOfWork, customer_id: uuid.UUID) -> ContactRow | None:
        """The local copy, else fetched (with a deadline) and kept until the customer
        changes or is erased."""
        store = RecipientStore(uow.session)
        found = await store.contact(customer_id)
        if found is not None:
            return found
        fetched = await self.directory.contact(str(customer_id))
        if fetched is None:
            return None
        row = ContactRow(
            customer_id,
            fetched.email,
            fetched.phone,
            fetched.locale,
            self.default_time_zone,
            fetched.given_name,
        )
        await store.save_contact(row)
        return row

    async def customer_changed(self, uow: UnitOfWork, customer_id: uuid.UUID) -> None:
        await RecipientStore(uow.session).forget_contact(customer_id)

    async def consent_changed(
        self,
        uow: UnitOfWork,
        customer_id: uuid.UUID,
        purpose: int,
        channel: int,
        status: int,
        at: datetime,
    ) -> None:
        await RecipientStore(uow.session).set_consent(customer_id, purpose, channel, status, at)

    async def erase(self, uow: UnitOfWork, customer_id: uuid.UUID) -> None:
        """CustomerErased: the contact copy, every message body and address, and her push
        subscriptions go."""
        await RecipientStore(uow.session).forget_contact(customer_id)
        await MessageStore(uow.session).erase_customer(customer_id)
        await PushStore(uow.session).erase_customer(customer_id)

    async def suppress(
        self, channel: Channel, address: str, reason: str, marketing_only: bool
    ) -> Any:
        if not address or len(address) > MAX_ADDRESS:
            raise InvalidArgument(
                "address is required",
                reason="ADDRESS_INVALID",
                field_violations=[FieldViolation("suppression.address", "1-320 characters")],
            )
        if reason not in SUPPRESSION_REASONS:
            raise InvalidArgument(
                "unknown suppression reason",
                reason="SUPPRESSION_REASON_INVALID",
                field_violations=[
                    FieldViolation("suppression.reason", f"one of {', '.join(SUPPRESSION_REASONS)}")
                ],
            )
        async with self.db.unit_of_work() as uow:
            row = await RecipientStore(uow.session).suppress(
                channel, address, reason, marketing_only
            )
            await uow.commit()
        return row

    async def unsuppress(self, channel: Channel, address: str) -> None:
        async with self.db.unit_of_work() as uow:
            if not await RecipientStore(uow.session).unsuppress(channel, address):
                raise NotFound("no such suppression", reason="SUPPRESSION_NOT_FOUND")
            await uow.commit()

    async def list_suppressions(self, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
        async with self.db.unit_of_work() as uow:
            return await RecipientStore(uow.session).list_suppressions(after, limit)
