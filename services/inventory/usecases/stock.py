"""Inventory use cases: stock levels — availability, nearby stores, the ledger, receipts,
adjustments and counts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.inventory import domain as d
from services.inventory.store import StockStore, movement_row
from services.inventory.usecases.access import actor_of, require_reader, require_writer
from services.inventory.usecases.common import (
    Context,
    announce,
    bounded_skus,
    require_known,
    require_location,
)
from tenpo.kit.auth import Principal
from tenpo.kit.idempotency import idempotent


class Stock:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.db = context.db

    # --------------------------------------------------------------------- queries

    async def get_availability(
        self, skus: Sequence[str], location_ids: Sequence[str]
    ) -> list[tuple[str, list[d.StockLevel]]]:
        bounded_skus(skus)
        for i, location_id in enumerate(location_ids):
            d.check_location_id(location_id, f"location_ids[{i}]")
        unique = list(dict.fromkeys(skus))
        async with self.db.unit_of_work() as uow:
            levels = await StockStore(uow.session).levels_for_skus(unique, location_ids)
        by_sku: dict[str, list[d.StockLevel]] = {sku: [] for sku in unique}
        for level in levels:
            by_sku[level.sku].append(level)
        return [(sku, by_sku[sku]) for sku in unique]

    async def find_nearby(
        self,
        point: d.GeoPoint,
        radius_km: float,
        lines: Sequence[d.Line],
        *,
        click_and_collect_only: bool,
        limit: int,
    ) -> list[tuple[d.Location, float, dict[str, int]]]:
        point.validate("point")
        if radius_km < 0 or radius_km > 1000:
            raise d.invalid("radius_km", "0-1000 km", "RADIUS_INVALID")
        radius_km = radius_km or 10.0
        stores = [
            (location, d.distance_km(point, location.geo_point))
            for location in (await self.context.locations.all()).values()
            if location.type is d.LocationType.STORE
            and (not click_and_collect_only or location.can(d.Capability.CLICK_AND_COLLECT))
        ]
        stores = sorted(
            ((loc, dist) for loc, dist in stores if dist <= radius_km),
            key=lambda pair: (pair[1], pair[0].priority, pair[0].id),
        )
        if not stores:
            return []
        demand: dict[str, int] = {}
        for line in lines:
            demand[line.sku] = demand.get(line.sku, 0) + line.quantity
        available: dict[str, dict[str, int]] = {}
        if demand:
            async with self.db.unit_of_work() as uow:
                levels = await StockStore(uow.session).levels_for_skus(
                    list(demand), [loc.id for loc, _ in stores]
                )
            for level in levels:
                available.setdefault(level.location_id, {})[level.sku] = level.available_to_promise
        found = []
        for location, distance in stores:
            atp = {sku: available.get(location.id, {}).get(sku, 0) for sku in demand}
            if all(atp[sku] >= quantity for sku, quantity in demand.items()):
                found.append((location, distance, atp))
            if len(found) >= limit:
                break
        return found

    async def list_levels(
        self, principal: Principal, location_id: str, after: str, limit: int
    ) -> list[d.StockLevel]:
        require_reader(principal)
        d.check_location_id(location_id)
        async with self.db.unit_of_work() as uow:
            await require_location(uow, location_id)
            return await StockStore(uow.session).list_at_location(location_id, after, limit)

    async def list_movements(
        self,
        principal: Principal,
        *,
        sku: str,
        location_id: str,
        before_seq: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        require_reader(principal)
        async with self.db.unit_of_work() as uow:
            return await StockStore(uow.session).list_movements(
                sku=sku, location_id=location_id, before_seq=before_seq, limit=limit
            )

    # --------------------------------------------------------------------- changes

    async def adjust(
        self,
        principal: Principal,
        *,
        sku: str,
        location_id: str,
        quantity: int,
        reason: d.MovementReason,
        note: str,
        request_id: str,
        request: Message,
    ) -> tuple[d.StockLevel, dict[str, Any]]:
        require_writer(principal)
        d.check_sku(sku)
        d.check_location_id(location_id)
        d.check_adjustment(quantity, reason)
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)

            async def adjust() -> wrappers_pb2.StringValue:
                await require_location(uow, location_id)
                if quantity > 0:
                    await require_known(self.context, uow, [sku])
                level = await stock.lock_one(sku, location_id, create=quantity > 0)
                written = await stock.write([level.adjust(quantity)])
                after = written[level.key]
                (movement,) = await stock.add_movements(
                    [
                        movement_row(
                            after,
                            quantity,
                            reason,
                            request_id=request_id,
                            actor=actor_of(principal),
                            note=note,
                        )
                    ]
                )
                announce(
                    uow,
                    locations,
                    {level.key: level.available_to_promise},
                    [after],
                    self.context.clock(),
                )
                return wrappers_pb2.StringValue(value=str(movement["id"]))

            result = await idempotent(
                uow,
                scope="AdjustStock",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=adjust,
            )
            movement = await stock.get_movement(uuid.UUID(result.value))
            level = await stock.get_level(sku, location_id)
            await uow.commit()
        return level, movement

    async def set_level(
        self,
        principal: Principal,
        *,
        sku: str,
        location_id: str,
        on_hand: int | None,
        safety_stock: int | None,
        note: str,
        request_id: str,
        request: Message,
    ) -> d.StockLevel:
        require_writer(principal)
        d.check_sku(sku)
        d.check_location_id(location_id)
        if on_hand is None and safety_stock is None:
            raise d.invalid("on_hand", "set on_hand, safety_stock or both", "NOTHING_TO_SET")
        if on_hand is not None and not 0 <= on_hand <= d.MAX_QUANTITY:
            raise d.invalid("on_hand", f"must be 0-{d.MAX_QUANTITY}", "QUANTITY_INVALID")
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)

            async def count() -> wrappers_pb2.StringValue:
                await require_location(uow, location_id)
                await require_known(self.context, uow, [sku])
                level = await stock.lock_one(sku, location_id, create=True)
                after = level
                delta = 0
                if on_hand is not None:
                    delta = on_hand - level.on_hand
                    if delta:
                        after = after.adjust(delta)
                if safety_stock is not None:
                    after = after.with_safety_stock(safety_stock)
                if after == level:
                    return wrappers_pb2.StringValue()
                written = (await stock.write([after]))[level.key]
                if delta:
                    await stock.add_movements(
                        [
                            movement_row(
                                written,
                                delta,
                                d.MovementReason.CYCLE_COUNT,
                                request_id=request_id,
                                actor=actor_of(principal),
                                note=note,
                            )
                        ]
                    )
                announce(
                    uow,
                    locations,
                    {level.key: level.available_to_promise},
                    [written],
                    self.context.clock(),
                )
                return wrappers_pb2.StringValue()

            await idempotent(
                uow,
                scope="SetStockLevel",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=count,
            )
            level = await stock.get_level(sku, location_id)
            await uow.commit()
        return level
