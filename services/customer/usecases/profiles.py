"""Customer use cases: profiles (read, update, staff search)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.customer import domain as d
from services.customer.store.customers import CustomerStore
from services.customer.usecases.common import (
    Context,
    UseCase,
    acting_for,
    bounded,
    load_customer,
)
from services.customer.usecases.mail_tokens import MailTokens
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    check_etag,
)

#: UpdateCustomer mask paths → domain fields they replace.
CUSTOMER_MASK = {
    "name": "name",
    "email": "email",
    "phone_number": "phone_number",
    "birthday": "birthday",
    "locale": "locale",
    "preferred_store_id": "preferred_store_id",
}


class Profiles(UseCase):
    """Customer profiles."""

    def __init__(self, context: Context, mail: MailTokens) -> None:
        super().__init__(context)
        self.mail = mail

    async def get_customer(self, principal: Principal, customer_ref: str) -> d.Customer:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            return await load_customer(uow, customer_id, principal)

    async def update_customer(
        self,
        principal: Principal,
        customer_ref: str,
        changes: Mapping[str, Any],
        *,
        etag: str,
    ) -> d.Customer:
        """Replace the fields in ``changes``: the servicer resolves them from the request's
        ``update_mask`` with ``tenpo.kit.fieldmask.update_paths`` (AIP-134), which refuses a
        mask that names nothing, so they are never empty."""
        customer_id = acting_for(
            principal,
            customer_ref,
            customer_scope="profile:write",
            staff_scope=d.WRITE_SCOPE,
            path="customer.id",
        )
        async with self.db.unit_of_work() as uow:
            store = CustomerStore(uow.session)
            current = await load_customer(uow, customer_id, principal, lock=True)
            check_etag(etag, current.etag, "customer")
            fields = dict(changes)
            violations = d.Violations()
            email_changed = False
            if "email" in fields:
                try:
                    email = d.normalize_email(fields.pop("email"), "customer.email")
                except InvalidArgument as error:
                    violations.absorb(error)
                else:
                    if email.key != current.email_key:
                        if await store.email_taken(email.key, exclude=customer_id):
                            raise AlreadyExists(
                                "this e-mail address is already registered",
                                reason="EMAIL_TAKEN",
                                field_violations=[
                                    FieldViolation("customer.email", "already registered")
                                ],
                            )
                        email_changed = True
                    fields.update(email=email.address, email_key=email.key)
            if fields.get("phone_number"):
                try:
                    fields["phone_number"] = d.normalize_phone(
                        fields["phone_number"], "customer.phone_number"
                    )
                except InvalidArgument as error:
                    violations.absorb(error)
                    fields.pop("phone_number")
            now = self.clock()
            updated = replace(current, **fields, version=current.version + 1, updated_at=now)
            if email_changed:
                updated = replace(updated, email_verified=False)
            d.validate_profile(updated, now.date(), violations)
            violations.raise_if_any("the profile is invalid", "CUSTOMER_INVALID")
            await store.update(updated)
            changed = [name for name in CUSTOMER_MASK if name in changes]
            if email_changed:
                changed.append("email_verified")
                await self.mail.send_verification(uow, updated)
            uow.add_event(
                events_pb2.CustomerUpdated(customer_id=str(updated.id), changed_fields=changed)
            )
            await uow.commit()
        return updated

    async def search_customers(
        self,
        principal: Principal,
        *,
        email: str,
        phone: str,
        name: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Customer]:
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        principal.require_scope(d.READ_SCOPE)
        email_key = phone_e164 = folded = None
        if email.strip():
            email_key = d.normalize_email(email).key
        elif phone.strip():
            phone_e164 = d.normalize_phone(phone, "phone_number")
        elif name.strip():
            bounded(name, "name", d.MAX_SEARCH_TEXT)
            folded = d.fold_for_search(name)
        else:
            raise d.invalid("email", "give an e-mail, a phone number or a name", "QUERY_REQUIRED")
        async with self.db.unit_of_work() as uow:
            return await CustomerStore(uow.session).search(
                email_key=email_key, phone=phone_e164, name=folded, after=after, limit=limit
            )
