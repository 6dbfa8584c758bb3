"""Inventory use cases: sourcing — where an order's lines should come from."""

from __future__ import annotations

from collections.abc import Sequence

from services.inventory import domain as d
from services.inventory.domain import sourcing as rules
from services.inventory.store import StockStore
from services.inventory.usecases.common import Context, location_not_found


class Sourcing:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def plan_fulfillment(
        self,
        lines: Sequence[d.Line],
        *,
        pickup_location_id: str,
        delivery_point: d.GeoPoint | None,
        same_day: bool,
    ) -> rules.Plan:
        if bool(pickup_location_id) == (delivery_point is not None):
            raise d.invalid(
                "pickup_location_id",
                "give either a pickup store or a delivery point",
                "DESTINATION_REQUIRED",
            )
        locations = await self.context.locations.all()
        origin: d.GeoPoint
        pickup: d.Location | None = None
        if pickup_location_id:
            pickup = locations.get(pickup_location_id)
            if pickup is None:
                raise location_not_found(pickup_location_id)
            origin = pickup.geo_point
        else:
            assert delivery_point is not None
            origin = delivery_point.validate("delivery_point")
        skus = list(dict.fromkeys(line.sku for line in lines))
        async with self.context.db.unit_of_work() as uow:
            levels = await StockStore(uow.session).levels_for_skus(skus)
        available: dict[str, dict[str, int]] = {}
        for level in levels:
            available.setdefault(level.location_id, {})[level.sku] = level.available_to_promise
        candidates = [
            rules.Candidate(loc, d.distance_km(origin, loc.geo_point), available.get(loc.id, {}))
            for loc in locations.values()
        ]
        if pickup is not None:
            return rules.plan_pickup(lines, pickup, candidates)
        return rules.plan_delivery(lines, candidates, same_day=same_day)
