"""Inventory persistence: what of each location's daily capacity is used (``capacity_usage``).

Lock order: capacity rows are locked after the stock levels a transaction locks, in
(location, day, kind) order, by every writer (reserve, release, expiry) — so no two
writers wait for each other in a cycle."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.domain.sourcing import CapacityUse

#: (location_id, day, kind)
UsageKey = tuple[str, date, d.Capability]


@dataclass(frozen=True)
class LocationLimits:
    """What deciding a location's capacity needs, as committed."""

    type: d.LocationType
    time_zone: str
    ship_from_store_capacity: d.DailyCapacity
    same_day_capacity: d.DailyCapacity


LIMITS = """
SELECT id, type, time_zone, ship_units_per_day, ship_orders_per_day, same_day_units_per_day,
       same_day_orders_per_day
FROM locations WHERE id = ANY($1::text[])
"""


async def location_limits(connection: Any, ids: Iterable[str]) -> dict[str, LocationLimits]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {
        r["id"]: LocationLimits(
            d.LocationType(r["type"]),
            r["time_zone"],
            d.DailyCapacity(r["ship_units_per_day"], r["ship_orders_per_day"]),
            d.DailyCapacity(r["same_day_units_per_day"], r["same_day_orders_per_day"]),
        )
        for r in await connection.fetch(LIMITS, wanted)
    }


#: Creates missing rows and locks all of them, in one order, in one round trip (a row
#: inserted concurrently makes us wait for its transaction, then update it: locked too).
LOCK_USAGE = """
INSERT INTO capacity_usage AS c (location_id, day, kind)
SELECT k.location_id, k.day, k.kind
FROM unnest($1::text[], $2::date[], $3::smallint[]) AS k(location_id, day, kind)
ORDER BY k.location_id, k.day, k.kind
ON CONFLICT (location_id, day, kind) DO UPDATE SET units = c.units
RETURNING c.location_id, c.day, c.kind, c.units, c.orders
"""

READ_USAGE = """
SELECT c.location_id, c.day, c.kind, c.units, c.orders FROM capacity_usage c
JOIN unnest($1::text[], $2::date[], $3::smallint[]) AS k(location_id, day, kind)
  ON c.location_id = k.location_id AND c.day = k.day AND c.kind = k.kind
"""

#: What the lines of these reservations counted, per location, day and kind.
COUNTED = """
SELECT location_id, capacity_day AS day, capacity_kind AS kind, sum(quantity) AS units,
       count(DISTINCT reservation_id) AS orders
FROM reservation_lines
WHERE reservation_id = ANY($1::uuid[]) AND capacity_day IS NOT NULL
GROUP BY location_id, capacity_day, capacity_kind
ORDER BY location_id, capacity_day, capacity_kind
"""

LOCK_ROWS = """
SELECT 1 FROM capacity_usage c
JOIN unnest($1::text[], $2::date[], $3::smallint[]) AS k(location_id, day, kind)
  ON c.location_id = k.location_id AND c.day = k.day AND c.kind = k.kind
ORDER BY c.location_id, c.day, c.kind FOR UPDATE OF c
"""

GIVE_BACK = """
UPDATE capacity_usage c SET units = c.units - u.units, orders = c.orders - u.orders
FROM unnest($1::text[], $2::date[], $3::smallint[], $4::bigint[], $5::bigint[])
     AS u(location_id, day, kind, units, orders)
WHERE c.location_id = u.location_id AND c.day = u.day AND c.kind = u.kind
"""


def usage_arrays(keys: Iterable[UsageKey]) -> tuple[list[str], list[date], list[int]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered], [int(k[2]) for k in ordered]


def _usage(rows: Iterable[Any]) -> dict[UsageKey, CapacityUse]:
    return {
        (r["location_id"], r["day"], d.Capability(r["kind"])): CapacityUse(r["units"], r["orders"])
        for r in rows
    }


async def lock_usage(connection: Any, keys: Iterable[UsageKey]) -> dict[UsageKey, CapacityUse]:
    """On a raw asyncpg connection (the reservation batch): lock ``keys``' rows."""
    arrays = usage_arrays(keys)
    if not arrays[0]:
        return {}
    return _usage(await connection.fetch(LOCK_USAGE, *arrays))


class CapacityStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def read(self, keys: Iterable[UsageKey]) -> dict[UsageKey, CapacityUse]:
        """What is used, without locking (a plan is a proposal; ReserveStock decides)."""
        arrays = usage_arrays(keys)
        if not arrays[0]:
            return {}
        connection = await self.session.connection()
        return _usage((await connection.exec_driver_sql(READ_USAGE, arrays)).mappings())

    async def give_back(self, reservation_ids: Sequence[uuid.UUID]) -> None:
        """Released or expired reservations no longer use the capacity their lines counted
        against. The caller holds their stock levels locked already (the lock order)."""
        if not reservation_ids:
            return
        connection = await self.session.connection()
        counted = list(
            (await connection.exec_driver_sql(COUNTED, (list(reservation_ids),))).mappings()
        )
        if not counted:
            return
        keys = [(r["location_id"], r["day"], r["kind"]) for r in counted]
        await connection.exec_driver_sql(LOCK_ROWS, usage_arrays(keys))
        await connection.exec_driver_sql(
            GIVE_BACK,
            (
                [r["location_id"] for r in counted],
                [r["day"] for r in counted],
                [r["kind"] for r in counted],
                [r["units"] for r in counted],
                [r["orders"] for r in counted],
            ),
        )
