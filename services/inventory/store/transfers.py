"""Inventory persistence: transfers."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.models import transfers


def _transfer(row: RowMapping) -> d.Transfer:
    return d.Transfer(
        id=row["id"],
        sku=row["sku"],
        from_location_id=row["from_location_id"],
        to_location_id=row["to_location_id"],
        quantity=row["quantity"],
        state=d.TransferState(row["state"]),
        created_at=row["created_at"],
        received_at=row["received_at"],
    )


class TransferStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, transfer: d.Transfer) -> d.Transfer:
        values = {
            "id": transfer.id,
            "sku": transfer.sku,
            "from_location_id": transfer.from_location_id,
            "to_location_id": transfer.to_location_id,
            "quantity": transfer.quantity,
            "state": int(transfer.state),
        }
        row = (
            (await self.session.execute(sa.insert(transfers).values(values).returning(transfers)))
            .mappings()
            .one()
        )
        return _transfer(row)

    async def get(self, transfer_id: uuid.UUID, *, for_update: bool = False) -> d.Transfer | None:
        query = sa.select(transfers).where(transfers.c.id == transfer_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _transfer(row) if row else None

    async def mark_received(self, transfer_id: uuid.UUID) -> d.Transfer:
        row = (
            (
                await self.session.execute(
                    sa.update(transfers)
                    .where(transfers.c.id == transfer_id)
                    .values(state=int(d.TransferState.RECEIVED), received_at=sa.func.now())
                    .returning(transfers)
                )
            )
            .mappings()
            .one()
        )
        return _transfer(row)
