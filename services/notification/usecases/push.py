"""Push subscription use cases: a customer registers, lists and removes the Web Push
subscriptions of her browsers and apps. Owner only: the caller is the customer ("me" or her
own id); at most MAX_PER_CUSTOMER are kept, the least recently registered goes first."""

from __future__ import annotations

import uuid

from services.notification.domain.push import MAX_PER_CUSTOMER, PushSubscription, validate
from services.notification.push_store import PushStore
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied

SELF = "me"


def owner(principal: Principal, customer_id: str) -> uuid.UUID:
    """The customer the call is about: the caller herself, never anyone else."""
    if principal.kind is not PrincipalKind.CUSTOMER or customer_id not in (
        SELF,
        principal.subject,
    ):
        raise PermissionDenied("only the customer herself", reason="NOT_OWNER")
    return uuid.UUID(principal.subject)


class PushSubscriptions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def register(self, customer_id: uuid.UUID, s: PushSubscription) -> PushSubscription:
        validate(s)
        async with self.db.unit_of_work() as uow:
            store = PushStore(uow.session)
            await store.lock_customer(customer_id)
            saved = await store.upsert(customer_id, s)
            await store.keep_newest(customer_id, MAX_PER_CUSTOMER)
            await uow.commit()
        return saved

    async def list(self, customer_id: uuid.UUID) -> list[PushSubscription]:
        async with self.db.unit_of_work() as uow:
            return await PushStore(uow.session).of_customer(customer_id)

    async def delete(self, customer_id: uuid.UUID, subscription_id: str) -> None:
        try:
            wanted = uuid.UUID(subscription_id)
        except ValueError:
            raise InvalidArgument(
                "id is not a UUID",
                reason="FIELD_INVALID",
                field_violations=[FieldViolation("id", "a UUID")],
            ) from None
        async with self.db.unit_of_work() as uow:
            # Someone else's subscription looks the same as none.
            if not await PushStore(uow.session).delete(customer_id, wanted):
                raise NotFound("no such push subscription", reason="PUSH_SUBSCRIPTION_NOT_FOUND")
            await uow.commit()
