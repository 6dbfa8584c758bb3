"""Customer persistence: customer rows ⇄ domain customers, credentials, search."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    customers,
)


def _customer(row: RowMapping) -> d.Customer:
    return d.Customer(
        id=row["id"],
        email=row["email"],
        email_key=row["email_key"],
        email_verified=row["email_verified"],
        name=d.PersonName(
            row["family_name"] or "",
            row["given_name"] or "",
            row["family_name_kana"] or "",
            row["given_name_kana"] or "",
        ),
        phone_number=row["phone_number"],
        birthday=row["birthday"],
        locale=row["locale"],
        preferred_store_id=row["preferred_store_id"],
        default_shipping_address_id=row["default_shipping_address_id"],
        default_billing_address_id=row["default_billing_address_id"],
        state=d.CustomerState(row["state"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        erased_at=row["erased_at"],
    )


def _customer_values(customer: d.Customer) -> dict[str, Any]:
    return {
        "email": customer.email,
        "email_key": customer.email_key,
        "email_verified": customer.email_verified,
        "family_name": customer.name.family_name or None,
        "given_name": customer.name.given_name or None,
        "family_name_kana": customer.name.family_name_kana or None,
        "given_name_kana": customer.name.given_name_kana or None,
        "phone_number": customer.phone_number,
        "birthday": customer.birthday,
        "locale": customer.locale,
        "preferred_store_id": customer.preferred_store_id,
        "default_shipping_address_id": customer.default_shipping_address_id,
        "default_billing_address_id": customer.default_billing_address_id,
        "state": int(customer.state),
        "search_text": "" if customer.is_erased else customer.name.search_text(),
        "version": customer.version,
        "updated_at": customer.updated_at,
        "erased_at": customer.erased_at,
    }


@dataclass(frozen=True)
class Credentials:
    id: uuid.UUID
    password_hash: str | None
    state: d.CustomerState


class CustomerStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: uuid.UUID, *, for_update: bool = False) -> d.Customer | None:
        query = sa.select(customers).where(customers.c.id == customer_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _customer(row) if row else None

    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        row = (
            await self.session.execute(
                sa.select(customers.c.id, customers.c.password_hash, customers.c.state).where(
                    customers.c.email_key == email_key
                )
            )
        ).first()
        return Credentials(row.id, row.password_hash, d.CustomerState(row.state)) if row else None

    async def password_hash(self, customer_id: uuid.UUID) -> str | None:
        return (
            await self.session.execute(
                sa.select(customers.c.password_hash).where(customers.c.id == customer_id)
            )
        ).scalar()

    async def email_taken(self, email_key: str, exclude: uuid.UUID | None = None) -> bool:
        query = sa.select(customers.c.id).where(customers.c.email_key == email_key)
        if exclude is not None:
            query = query.where(customers.c.id != exclude)
        return (await self.session.execute(query)).first() is not None

    async def insert(self, customer: d.Customer, password_hash: str) -> bool:
        """False when the e-mail is taken (lost a race with another registration)."""
        result = await self.session.execute(
            pg.insert(customers)
            .values(
                id=customer.id,
                created_at=customer.created_at,
                password_hash=password_hash,
                **_customer_values(customer),
            )
            .on_conflict_do_nothing(index_elements=[customers.c.email_key])
            .returning(customers.c.id)
        )
        return result.first() is not None

    async def update(self, customer: d.Customer) -> None:
        await self.session.execute(
            sa.update(customers)
            .where(customers.c.id == customer.id)
            .values(**_customer_values(customer))
        )

    async def set_password(self, customer_id: uuid.UUID, password_hash: str) -> None:
        await self.session.execute(
            sa.update(customers)
            .where(customers.c.id == customer_id)
            .values(password_hash=password_hash, updated_at=sa.func.now())
        )

    async def clear_password(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.update(customers).where(customers.c.id == customer_id).values(password_hash=None)
        )

    async def search(
        self,
        *,
        email_key: str | None,
        phone: str | None,
        name: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Customer]:
        query = sa.select(customers).where(customers.c.state == int(d.CustomerState.ACTIVE))
        if email_key is not None:
            query = query.where(customers.c.email_key == email_key)
        elif phone is not None:
            query = query.where(customers.c.phone_number == phone)
        elif name is not None:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(customers.c.search_text.like(f"%{escaped}%"))
        if after is not None:
            query = query.where(
                sa.tuple_(customers.c.created_at, customers.c.id) < sa.tuple_(*after)
            )
        query = query.order_by(customers.c.created_at.desc(), customers.c.id.desc()).limit(limit)
        return [_customer(r) for r in (await self.session.execute(query)).mappings()]

    async def any_exists(self) -> bool:
        return (await self.session.execute(sa.select(customers.c.id).limit(1))).first() is not None
