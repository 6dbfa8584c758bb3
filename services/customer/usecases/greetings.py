"""Customer use cases: checking in at a store, and the greetings its welcome banners show
(see domain/greetings.py for what a greeting may hold)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import greetings as gd
from services.customer.domain import segments as sd
from services.customer.greetings import GreetingHub
from services.customer.store.consents import ConsentStore
from services.customer.store.customers import CustomerStore
from services.customer.store.segments import SegmentStore
from services.customer.store.timeline import TimelineStore
from services.customer.usecases.common import Context, UseCase, load_customer, subject_id
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import FailedPrecondition, PermissionDenied

#: How much of her timeline a greeting looks at for a suggestion.
RECENT_ENTRIES = 20


@dataclass(frozen=True)
class GreetingPolicy:
    display_seconds: int
    watch_max_seconds: float
    #: A second check-in at the same store within this is not greeted again.
    repeat_after: timedelta


def checked_in(uow: UnitOfWork, customer_id: uuid.UUID, store_id: str, at: datetime) -> None:
    uow.add_event(
        events_pb2.CustomerCheckedIn(
            customer_id=str(customer_id), store_id=store_id, check_in_time=convert.timestamp(at)
        )
    )


class Greetings(UseCase):
    def __init__(self, context: Context, policy: GreetingPolicy) -> None:
        super().__init__(context)
        self.greeting = policy
        self.hub = GreetingHub(self.compose, policy.repeat_after)

    async def check_in(self, principal: Principal, store_ref: str) -> datetime:
        """Her own app at the entrance (a session handed to a device checks in by the
        hand-off itself)."""
        principal.require_any_kind(PrincipalKind.CUSTOMER)
        if principal.session_device is not None:
            raise PermissionDenied(
                "a session handed to a device cannot do this", reason="DEVICE_SESSION_NOT_ALLOWED"
            )
        customer_id = subject_id(principal)
        store_id = store_ref.strip()
        if not d.STORE_ID_PATTERN.match(store_id):
            raise d.invalid(
                "store_id", "a store id (lower-case letters, digits, dashes)", "STORE_ID_INVALID"
            )
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            checked_in(uow, customer_id, store_id, now)
            await uow.commit()
        return now

    async def compose(self, customer_id: uuid.UUID, at: datetime) -> gd.Greeting | None:
        """What a banner may show of her now; None for nobody to greet."""
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id)
            if customer is None or customer.is_erased or not customer.name.given_name:
                return None
            consents = d.current_consents(await ConsentStore(uow.session).all_of(customer_id))
            if not gd.may_greet(consents):
                return None
            recent = await TimelineStore(uow.session).page(customer_id, None, RECENT_ENTRIES)
            segments = await SegmentStore(uow.session).memberships(customer_id)
        return gd.compose(
            customer.name.given_name,
            recent,
            sd.BIRTHDAY_MONTH in segments,
            at,
            self.greeting.display_seconds,
        )

    async def watch(self, principal: Principal) -> AsyncIterator[gd.Greeting]:
        """A store device's greetings: its token names the store."""
        principal.require_any_kind(PrincipalKind.DEVICE)
        principal.require_scope(gd.GREETINGS_SCOPE)
        if not principal.store_id:
            raise FailedPrecondition(
                "greetings are for devices of a store", reason="DEVICE_STORE_REQUIRED"
            )
        async for greeting in self.hub.watch(
            principal.store_id, max_seconds=self.greeting.watch_max_seconds
        ):
            yield greeting
