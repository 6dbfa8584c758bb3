"""Inventory persistence: stock levels and the movement ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.models import movements, stock_levels

#: Locks levels in (sku, location) order, the one order every writer uses, so concurrent
#: multi-line writers never deadlock. One array pair keeps one prepared plan.
LOCK_LEVELS = """
SELECT s.* FROM stock_levels s
JOIN unnest($1::text[], $2::text[]) AS k(sku, loc) ON s.sku = k.sku AND s.location_id = k.loc
ORDER BY s.sku, s.location_id FOR UPDATE OF s
"""


def key_arrays(keys: Iterable[d.Key]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered]


def level_of_row(row: Any) -> d.StockLevel:
    """A level from a SQLAlchemy row mapping or an asyncpg record."""
    return d.StockLevel(
        sku=row["sku"],
        location_id=row["location_id"],
        on_hand=row["on_hand"],
        reserved=row["reserved"],
        safety_stock=row["safety_stock"],
        in_transit=row["in_transit"],
        version=row["version"],
        updated_at=row["updated_at"],
    )


def movement_row(
    level: d.StockLevel,
    quantity: int,
    reason: d.MovementReason,
    *,
    request_id: str,
    actor: str,
    reference: str = "",
    note: str = "",
) -> dict[str, Any]:
    """A ledger row for ``StockStore.add_movements``: ``level`` is the level after the move."""
    return {
        "sku": level.sku,
        "location_id": level.location_id,
        "quantity": quantity,
        "reason": int(reason),
        "request_id": request_id,
        "actor": actor,
        "reference": reference,
        "note": note[:500],
        "on_hand_after": level.on_hand,
    }


class StockStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, keys: Iterable[d.Key]) -> dict[d.Key, d.StockLevel]:
        """Lock the existing levels of ``keys`` (see ``LOCK_LEVELS``)."""
        skus, locs = key_arrays(keys)
        if not skus:
            return {}
        connection = await self.session.connection()
        rows = (await connection.exec_driver_sql(LOCK_LEVELS, (skus, locs))).mappings()
        return {(r["sku"], r["location_id"]): level_of_row(r) for r in rows}

    async def lock_one(self, sku: str, location_id: str, *, create: bool) -> d.StockLevel:
        """Lock one level; with ``create``, a missing level is created empty first."""
        if create:
            await self.session.execute(
                pg.insert(stock_levels)
                .values(sku=sku, location_id=location_id)
                .on_conflict_do_nothing()
            )
        found = await self.lock([(sku, location_id)])
        return found.get((sku, location_id)) or d.StockLevel(sku, location_id)

    async def write(self, levels: Sequence[d.StockLevel]) -> dict[d.Key, d.StockLevel]:
        """Store levels the caller holds locked (absolute values, version + 1)."""
        if not levels:
            return {}
        rows = (
            await self.session.execute(
                sa.text(
                    "UPDATE stock_levels s SET on_hand = v.on_hand, reserved = v.reserved,"
                    " safety_stock = v.safety_stock, in_transit = v.in_transit,"
                    " version = s.version + 1, updated_at = now()"
                    " FROM unnest(CAST(:skus AS text[]), CAST(:locs AS text[]),"
                    "   CAST(:on_hand AS bigint[]), CAST(:reserved AS bigint[]),"
                    "   CAST(:safety AS bigint[]), CAST(:transit AS bigint[]))"
                    "   AS v(sku, loc, on_hand, reserved, safety_stock, in_transit)"
                    " WHERE s.sku = v.sku AND s.location_id = v.loc"
                    " RETURNING s.*"
                ),
                {
                    "skus": [lv.sku for lv in levels],
                    "locs": [lv.location_id for lv in levels],
                    "on_hand": [lv.on_hand for lv in levels],
                    "reserved": [lv.reserved for lv in levels],
                    "safety": [lv.safety_stock for lv in levels],
                    "transit": [lv.in_transit for lv in levels],
                },
            )
        ).mappings()
        written = {(r["sku"], r["location_id"]): level_of_row(r) for r in rows}
        if len(written) != len({lv.key for lv in levels}):
            raise RuntimeError("a stock level to write was not locked or does not exist")
        return written

    async def ensure(self, keys: Iterable[d.Key]) -> None:
        keys = list(keys)
        if keys:
            await self.session.execute(
                pg.insert(stock_levels)
                .values([{"sku": s, "location_id": loc} for s, loc in keys])
                .on_conflict_do_nothing()
            )

    async def get_level(self, sku: str, location_id: str) -> d.StockLevel:
        row = (
            (
                await self.session.execute(
                    sa.select(stock_levels).where(
                        stock_levels.c.sku == sku, stock_levels.c.location_id == location_id
                    )
                )
            )
            .mappings()
            .first()
        )
        return level_of_row(row) if row else d.StockLevel(sku, location_id)

    async def get_movement(self, movement_id: uuid.UUID) -> dict[str, Any]:
        row = (
            (await self.session.execute(sa.select(movements).where(movements.c.id == movement_id)))
            .mappings()
            .one()
        )
        return dict(row)

    async def levels_for_skus(
        self, skus: Sequence[str], location_ids: Sequence[str] = ()
    ) -> list[d.StockLevel]:
        query = sa.select(stock_levels).where(stock_levels.c.sku.in_(skus))
        if location_ids:
            query = query.where(stock_levels.c.location_id.in_(location_ids))
        rows = (
            await self.session.execute(
                query.order_by(stock_levels.c.sku, stock_levels.c.location_id)
            )
        ).mappings()
        return [level_of_row(r) for r in rows]

    async def list_at_location(
        self, location_id: str, after: str, limit: int
    ) -> list[d.StockLevel]:
        rows = (
            await self.session.execute(
                sa.select(stock_levels)
                .where(stock_levels.c.location_id == location_id, stock_levels.c.sku > after)
                .order_by(stock_levels.c.sku)
                .limit(limit)
            )
        ).mappings()
        return [level_of_row(r) for r in rows]

    async def add_movements(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        result = await self.session.execute(
            sa.insert(movements).returning(movements), [{"id": uuid.uuid4(), **r} for r in rows]
        )
        return [dict(r) for r in result.mappings()]

    async def list_movements(
        self, *, sku: str, location_id: str, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        query = sa.select(movements).order_by(movements.c.seq.desc()).limit(limit)
        if sku:
            query = query.where(movements.c.sku == sku)
        if location_id:
            query = query.where(movements.c.location_id == location_id)
        if before_seq is not None:
            query = query.where(movements.c.seq < before_seq)
        return [dict(r) for r in (await self.session.execute(query)).mappings()]

    async def ledger_sums(self, keys: Sequence[d.Key]) -> dict[d.Key, int]:
        rows = await self.session.execute(
            sa.select(movements.c.sku, movements.c.location_id, sa.func.sum(movements.c.quantity))
            .where(sa.tuple_(movements.c.sku, movements.c.location_id).in_(keys))
            .group_by(movements.c.sku, movements.c.location_id)
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}
