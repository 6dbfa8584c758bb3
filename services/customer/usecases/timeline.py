"""Customer use cases: the interaction timeline (in-store devices, projected entries)."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.customer import projections
from services.customer.domain import timeline as td
from services.customer.store.timeline import TimelineStore
from services.customer.usecases.common import UseCase, acting_for, load_customer, subject_id
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import PermissionDenied
from tenpo.kit.idempotency import idempotent


class Timeline(UseCase):
    async def record(
        self,
        principal: Principal,
        kind: td.InteractionKind,
        sku: str,
        size: str,
        *,
        item_tag: str = "",
        request_id: str,
        request: Message,
    ) -> td.Interaction:
        """An in-store device's interaction. Channel, store and device come from the token:
        a device's own token records an anonymous interaction; a customer session handed to
        the device records hers. A customer's own (app) session records nothing here."""
        principal.require_any_kind(PrincipalKind.DEVICE, PrincipalKind.CUSTOMER)
        if principal.kind is PrincipalKind.CUSTOMER:
            if principal.session_device is None:
                raise PermissionDenied(
                    "interactions are recorded by in-store devices",
                    reason="DEVICE_SESSION_REQUIRED",
                )
            customer_id: uuid.UUID | None = subject_id(principal)
            device_id = principal.session_device
        else:
            principal.require_scope(td.INTERACTIONS_SCOPE)
            customer_id, device_id = None, principal.subject
        sku, size = td.check_device_interaction(kind, sku, size)
        item_tag = td.check_item_tag(kind, item_tag)
        async with self.db.unit_of_work() as uow:
            if customer_id is not None:
                await load_customer(uow, customer_id, principal)
            store = TimelineStore(uow.session)
            item = td.Interaction(
                id=uuid.uuid4(),
                customer_id=customer_id,
                kind=kind,
                sku=sku,
                size=size,
                channel=principal.channel,
                store_id=principal.store_id,
                device_id=device_id,
                summary="",
                created_at=self.clock(),
                item_tag=item_tag,
            )

            async def insert() -> wrappers_pb2.StringValue:
                await store.insert(item)
                return wrappers_pb2.StringValue(value=str(item.id))

            # The scope names the customer (erasure removes her keys) or the device.
            owner = str(customer_id) if customer_id else f"device-{device_id}"
            done = await idempotent(
                uow,
                scope=f"RecordInteraction:{owner}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=insert,
            )
            found = await store.get(uuid.UUID(done.value))
            await uow.commit()
        assert found is not None
        return found

    async def list(
        self,
        principal: Principal,
        customer_ref: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[td.Interaction]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            return await TimelineStore(uow.session).page(customer_id, after, limit)

    async def project(self, uow: UnitOfWork, entry: projections.Projected) -> bool:
        """Another service's event as an entry of her timeline, in the consumer's
        transaction. Guests (no customer id), unknown and erased customers get nothing.
        Returns whether an entry was added."""
        try:
            customer_id = uuid.UUID(entry.customer_ref)
        except ValueError:
            return False
        store = TimelineStore(uow.session)
        if not await store.customer_alive(customer_id):
            return False
        return await store.insert_projected(
            td.Interaction(
                id=entry.entry_id,
                customer_id=customer_id,
                kind=entry.kind,
                sku="",
                size="",
                channel=entry.channel,
                store_id=entry.store_id,
                device_id=None,
                summary=entry.summary,
                created_at=entry.at,
                reference=entry.reference,
            )
        )
