"""Inventory persistence: the known-SKU projection and service-wide flags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory.models import flags, known_skus

DEMO_STOCKING_FLAG = "demo_stocking"


class SkuStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def unknown(self, skus: Iterable[str]) -> list[str]:
        wanted = sorted(set(skus))
        known = set(
            (
                await self.session.execute(
                    sa.select(known_skus.c.sku).where(known_skus.c.sku.in_(wanted))
                )
            ).scalars()
        )
        return [s for s in wanted if s not in known]

    async def upsert(self, product_id: str, skus: Sequence[str], *, archived: bool) -> list[str]:
        """Record the SKUs; returns the ones seen for the first time."""
        if not skus:
            return []
        statement = pg.insert(known_skus).values(
            [{"sku": s, "product_id": product_id, "archived": archived} for s in skus]
        )
        result = await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[known_skus.c.sku],
                set_={
                    "product_id": statement.excluded.product_id,
                    "archived": statement.excluded.archived,
                    "updated_at": sa.func.now(),
                },
            ).returning(known_skus.c.sku, sa.literal_column("xmax = 0").label("inserted"))
        )
        return [r.sku for r in result if r.inserted]

    async def all_skus(self) -> list[str]:
        return list(
            (
                await self.session.execute(sa.select(known_skus.c.sku).order_by(known_skus.c.sku))
            ).scalars()
        )

    async def archive(self, skus: Sequence[str]) -> None:
        if skus:
            await self.session.execute(
                sa.update(known_skus)
                .where(known_skus.c.sku.in_(skus))
                .values(archived=True, updated_at=sa.func.now())
            )

    async def flag(self, key: str) -> Any:
        return (
            await self.session.execute(sa.select(flags.c.value).where(flags.c.key == key))
        ).scalar()

    async def set_flag(self, key: str, value: Any) -> None:
        statement = pg.insert(flags).values(key=key, value=value)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[flags.c.key], set_={"value": statement.excluded.value}
            )
        )
