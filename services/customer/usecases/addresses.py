"""Customer use cases: address books and default addresses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.customer import domain as d
from services.customer.store.addresses import AddressStore
from services.customer.store.customers import CustomerStore
from services.customer.usecases.common import (
    UseCase,
    acting_for,
    load_customer,
)
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import (
    FailedPrecondition,
    NotFound,
    check_etag,
)
from tenpo.kit.idempotency import idempotent

ADDRESS_MASK = ("label", "postal_address", "default_shipping", "default_billing")


class Addresses(UseCase):
    """A customer's address book."""

    async def list_addresses(
        self,
        principal: Principal,
        customer_ref: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> tuple[d.Customer, list[d.Address]]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal)
            found = await AddressStore(uow.session).list_page(customer_id, after, limit)
        return customer, found

    async def create_address(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        label: str,
        postal: d.PostalAddress,
        default_shipping: bool,
        default_billing: bool,
        request_id: str,
        request: Message,
    ) -> tuple[d.Customer, d.Address]:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        label = d.validate_label(label, "address.label")
        normalized = d.normalize_address(postal, "address.postal_address")
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            now = self.clock()
            address = d.Address(uuid.uuid4(), customer_id, label, normalized, 1, now, now)

            async def create() -> wrappers_pb2.StringValue:
                nonlocal customer
                if await store.count(customer_id) >= d.MAX_ADDRESSES:
                    raise FailedPrecondition(
                        f"at most {d.MAX_ADDRESSES} addresses", reason="TOO_MANY_ADDRESSES"
                    )
                await store.insert(address)
                # The first address becomes the default for whatever has none yet.
                customer = await self._set_defaults(
                    uow,
                    customer,
                    address.id,
                    shipping=default_shipping or customer.default_shipping_address_id is None,
                    billing=default_billing or customer.default_billing_address_id is None,
                )
                return wrappers_pb2.StringValue(value=str(address.id))

            created = await idempotent(
                uow,
                scope=f"CreateAddress:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            found = await store.get(customer_id, uuid.UUID(created.value))
            await uow.commit()
        if found is None:  # pragma: no cover - a replayed id whose address was deleted since
            raise NotFound("the address was deleted", reason="ADDRESS_NOT_FOUND")
        return customer, found

    async def _set_defaults(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        address_id: uuid.UUID,
        *,
        shipping: bool | None,
        billing: bool | None,
    ) -> d.Customer:
        """Make (True) or stop being (False) a default; None leaves it alone."""
        changes: dict[str, Any] = {}
        for flag, attr in (
            (shipping, "default_shipping_address_id"),
            (billing, "default_billing_address_id"),
        ):
            current = getattr(customer, attr)
            if flag is True and current != address_id:
                changes[attr] = address_id
            elif flag is False and current == address_id:
                changes[attr] = None
        if not changes:
            return customer
        updated = replace(
            customer, **changes, version=customer.version + 1, updated_at=self.clock()
        )
        await CustomerStore(uow.session).update(updated)
        uow.add_event(
            events_pb2.CustomerUpdated(customer_id=str(updated.id), changed_fields=sorted(changes))
        )
        return updated

    async def update_address(
        self,
        principal: Principal,
        customer_ref: str,
        address_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        etag: str,
    ) -> tuple[d.Customer, d.Address]:
        """Apply ``changes`` (resolved from ``update_mask`` by the kit's ``update_paths``,
        never empty); a default flag set to False stops the address being that default."""
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        label = changes.get("label")
        postal = changes.get("postal_address")
        if label is not None:
            label = d.validate_label(label, "address.label")
        if postal is not None:
            postal = d.normalize_address(postal, "address.postal_address")
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            current = await store.get(customer_id, address_id)
            if current is None:
                raise NotFound("no such address", reason="ADDRESS_NOT_FOUND")
            check_etag(etag, current.etag, "address")
            updated = current
            if label is not None or postal is not None:
                updated = replace(
                    current,
                    label=current.label if label is None else label,
                    postal=current.postal if postal is None else postal,
                    version=current.version + 1,
                    updated_at=self.clock(),
                )
                await store.update(updated)
            customer = await self._set_defaults(
                uow,
                customer,
                address_id,
                shipping=changes.get("default_shipping"),
                billing=changes.get("default_billing"),
            )
            await uow.commit()
        return customer, updated

    async def delete_address(
        self, principal: Principal, customer_ref: str, address_id: uuid.UUID
    ) -> None:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            if await store.get(customer_id, address_id) is None:
                raise NotFound("no such address", reason="ADDRESS_NOT_FOUND")
            await self._set_defaults(uow, customer, address_id, shipping=False, billing=False)
            await store.delete(address_id)
            await uow.commit()
