"""Customer persistence: address books."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.models import (
    addresses,
)


def _address(row: RowMapping) -> d.Address:
    return d.Address(
        id=row["id"],
        customer_id=row["customer_id"],
        label=row["label"],
        postal=d.PostalAddress(
            region_code=row["region_code"],
            postal_code=row["postal_code"],
            administrative_area=row["administrative_area"],
            locality=row["locality"],
            address_lines=tuple(row["address_lines"]),
            recipient=row["recipient"],
            phone_number=row["phone_number"],
        ),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _address_values(address: d.Address) -> dict[str, Any]:
    p = address.postal
    return {
        "label": address.label,
        "region_code": p.region_code,
        "postal_code": p.postal_code,
        "administrative_area": p.administrative_area,
        "locality": p.locality,
        "address_lines": list(p.address_lines),
        "recipient": p.recipient,
        "phone_number": p.phone_number,
        "version": address.version,
        "updated_at": address.updated_at,
    }


class AddressStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: uuid.UUID, address_id: uuid.UUID) -> d.Address | None:
        row = (
            (
                await self.session.execute(
                    sa.select(addresses)
                    .where(addresses.c.id == address_id, addresses.c.customer_id == customer_id)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return _address(row) if row else None

    async def count(self, customer_id: uuid.UUID) -> int:
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count())
                    .select_from(addresses)
                    .where(addresses.c.customer_id == customer_id)
                )
            ).scalar_one()
        )

    async def list_page(
        self, customer_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[d.Address]:
        query = sa.select(addresses).where(addresses.c.customer_id == customer_id)
        if after is not None:
            query = query.where(
                sa.tuple_(addresses.c.created_at, addresses.c.id) > sa.tuple_(*after)
            )
        query = query.order_by(addresses.c.created_at, addresses.c.id).limit(limit)
        return [_address(r) for r in (await self.session.execute(query)).mappings()]

    async def insert(self, address: d.Address) -> None:
        await self.session.execute(
            sa.insert(addresses).values(
                id=address.id,
                customer_id=address.customer_id,
                created_at=address.created_at,
                **_address_values(address),
            )
        )

    async def update(self, address: d.Address) -> None:
        await self.session.execute(
            sa.update(addresses)
            .where(addresses.c.id == address.id)
            .values(**_address_values(address))
        )

    async def delete(self, address_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(addresses).where(addresses.c.id == address_id))
