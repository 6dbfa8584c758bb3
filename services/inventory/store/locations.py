"""Inventory persistence: locations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.models import locations, stock_levels


def _location(row: RowMapping) -> d.Location:
    address = row["address"] or {}
    return d.Location(
        id=row["id"],
        display_name=row["display_name"],
        type=d.LocationType(row["type"]),
        geo_point=d.GeoPoint(row["latitude"], row["longitude"]),
        address=d.Address(
            region_code=address.get("region_code", ""),
            postal_code=address.get("postal_code", ""),
            administrative_area=address.get("administrative_area", ""),
            locality=address.get("locality", ""),
            address_lines=tuple(address.get("address_lines", ())),
        ),
        time_zone=row["time_zone"],
        priority=row["priority"],
        capabilities=frozenset(d.Capability(c) for c in row["capabilities"]),
        low_stock_threshold=row["low_stock_threshold"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        ship_from_store_capacity=d.DailyCapacity(
            row["ship_units_per_day"], row["ship_orders_per_day"]
        ),
        same_day_capacity=d.DailyCapacity(
            row["same_day_units_per_day"], row["same_day_orders_per_day"]
        ),
        same_day_radius_km=row["same_day_radius_km"],
    )


def _location_values(location: d.Location) -> dict[str, Any]:
    a = location.address
    return {
        "id": location.id,
        "display_name": location.display_name,
        "type": int(location.type),
        "address": {
            "region_code": a.region_code,
            "postal_code": a.postal_code,
            "administrative_area": a.administrative_area,
            "locality": a.locality,
            "address_lines": list(a.address_lines),
        },
        "latitude": location.geo_point.latitude,
        "longitude": location.geo_point.longitude,
        "time_zone": location.time_zone,
        "priority": location.priority,
        "capabilities": sorted(int(c) for c in location.capabilities),
        "low_stock_threshold": location.low_stock_threshold,
        "version": location.version,
        "ship_units_per_day": location.ship_from_store_capacity.units_per_day,
        "ship_orders_per_day": location.ship_from_store_capacity.orders_per_day,
        "same_day_units_per_day": location.same_day_capacity.units_per_day,
        "same_day_orders_per_day": location.same_day_capacity.orders_per_day,
        "same_day_radius_km": location.same_day_radius_km,
    }


class LocationStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, location_id: str, *, for_update: bool = False) -> d.Location | None:
        query = sa.select(locations).where(locations.c.id == location_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _location(row) if row else None

    async def all(self) -> list[d.Location]:
        rows = (
            await self.session.execute(sa.select(locations).order_by(locations.c.id))
        ).mappings()
        return [_location(r) for r in rows]

    async def list_page(
        self, *, type: d.LocationType | None, after: str, limit: int
    ) -> list[d.Location]:
        query = sa.select(locations).where(locations.c.id > after).order_by(locations.c.id)
        if type is not None:
            query = query.where(locations.c.type == int(type))
        rows = (await self.session.execute(query.limit(limit))).mappings()
        return [_location(r) for r in rows]

    async def insert(self, location: d.Location) -> d.Location | None:
        """None when the id is taken."""
        row = (
            (
                await self.session.execute(
                    pg.insert(locations)
                    .values(_location_values(location))
                    .on_conflict_do_nothing()
                    .returning(locations)
                )
            )
            .mappings()
            .first()
        )
        return _location(row) if row else None

    async def update(self, location: d.Location) -> d.Location:
        values = _location_values(location)
        values.pop("id")
        row = (
            (
                await self.session.execute(
                    sa.update(locations)
                    .where(locations.c.id == location.id)
                    .values(**values, updated_at=sa.func.now())
                    .returning(locations)
                )
            )
            .mappings()
            .one()
        )
        return _location(row)

    async def delete(self, location_id: str) -> None:
        await self.session.execute(sa.delete(locations).where(locations.c.id == location_id))

    async def holds_stock(self, location_id: str) -> bool:
        query = sa.select(
            sa.exists().where(
                stock_levels.c.location_id == location_id,
                (stock_levels.c.on_hand > 0)
                | (stock_levels.c.reserved > 0)
                | (stock_levels.c.in_transit > 0),
            )
        )
        return bool((await self.session.execute(query)).scalar())
