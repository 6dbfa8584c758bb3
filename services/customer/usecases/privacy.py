"""Customer use cases: GDPR export and erasure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from services.customer import convert
from services.customer import domain as d
from services.customer.exports import Metadata, ServiceExports
from services.customer.store.customers import CustomerStore
from services.customer.store.privacy import PrivacyStore
from services.customer.usecases.common import (
    Context,
    UseCase,
    acting_for,
    customer_not_found,
    load_customer,
    throttle_key,
)
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal
from tenpo.kit.errors import (
    PermissionDenied,
)

#: Events about one customer (their id inside): export shows them, erasure drops them. They
#: carry ids, not personal data, but a pending one would still go out after the
#: CustomerErased that follows it.
EVENT_CLASSES: dict[str, type[Message]] = {
    m.DESCRIPTOR.full_name: m
    for m in (
        events_pb2.CustomerRegistered,
        events_pb2.CustomerUpdated,
        events_pb2.ConsentChanged,
        events_pb2.EmailVerificationRequested,
        events_pb2.PasswordResetRequested,
        events_pb2.ConsentConfirmationRequested,
        events_pb2.LoyaltyBalanceChanged,
        events_pb2.StoreCardBalanceChanged,
        events_pb2.SegmentEntered,
        events_pb2.SegmentExited,
        events_pb2.BirthdayReached,
    )
}
EVENT_TYPES = tuple(EVENT_CLASSES)


def _event_as_json(event_type: str, payload: bytes) -> dict[str, Any]:
    """An outbox payload for the export: the event as JSON."""
    message_type = EVENT_CLASSES.get(event_type)
    if message_type is None:
        return {}
    return json_format.MessageToDict(message_type.FromString(payload))


@dataclass(frozen=True)
class Export:
    """The export document (JSON) and the services whose part is missing from it."""

    json: str
    unavailable: list[str]


class Privacy(UseCase):
    """GDPR: export and erasure."""

    def __init__(self, context: Context, others: ServiceExports | None = None) -> None:
        super().__init__(context)
        self.others = others

    async def export(
        self, principal: Principal, customer_ref: str, forward: Metadata = ()
    ) -> Export:
        """Everything this service holds about the customer and, when the other services
        are configured, what each of them holds (asked with the caller's credentials,
        ``forward``): a service that does not answer leaves its part UNAVAILABLE and is
        named, the export itself still succeeds."""
        # A device-bound session may read a profile but never carry away all of it.
        customer_id = acting_for(principal, customer_ref, customer_scope="profile:write")
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal)
            key = throttle_key("customer", customer.email_key) if customer.email_key else None
            tables = await PrivacyStore(uow.session).export(customer_id, key, EVENT_TYPES)
        for row in tables["outbox"]:
            row["payload"] = _event_as_json(row["event_type"], row["payload"])
        document: dict[str, Any] = {
            "customer_id": str(customer_id),
            "exported_at": self.clock().isoformat(),
            "service": "customer",
            "tables": tables,
        }
        unavailable: list[str] = []
        if self.others is not None:
            parts = await self.others.gather(str(customer_id), forward)
            document["services"] = {part.service: part.as_json() for part in parts}
            unavailable = [part.service for part in parts if part.status != "OK"]
            document["complete"] = not unavailable
        return Export(
            json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True), unavailable
        )

    async def erase(self, principal: Principal, customer_ref: str) -> d.Customer:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        if principal.session_device is not None:
            raise PermissionDenied(
                "a session handed to a device cannot do this", reason="DEVICE_SESSION_NOT_ALLOWED"
            )
        async with self.db.unit_of_work() as uow:
            store = CustomerStore(uow.session)
            customer = await store.get(customer_id, for_update=True)
            if customer is None:
                raise customer_not_found()
            if customer.is_erased:
                return customer  # erasing twice changes nothing
            now = self.clock()
            key = throttle_key("customer", customer.email_key) if customer.email_key else None
            await PrivacyStore(uow.session).erase(customer, key, EVENT_TYPES, now)
            erased = d.Customer(
                id=customer.id,
                email=None,
                email_key=None,
                name=d.PersonName(),
                state=d.CustomerState.ERASED,
                version=customer.version + 1,
                created_at=customer.created_at,
                updated_at=now,
                erased_at=now,
            )
            await store.update(erased)
            await store.clear_password(customer.id)
            uow.add_event(
                events_pb2.CustomerErased(
                    customer_id=str(customer.id), erase_time=convert.timestamp(now)
                )
            )
            await uow.commit()
        return erased
