"""Inventory use cases: sourcing — where an order's lines should come from, by the active
version of a sourcing profile, the stock and the daily capacity left."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from services.inventory import domain as d
from services.inventory.domain import profiles
from services.inventory.domain import sourcing as rules
from services.inventory.store import CapacityStore, StockStore, UsageKey
from services.inventory.usecases.common import Context, location_not_found
from services.inventory.usecases.profiles import ProfileCache


class Sourcing:
    def __init__(self, context: Context, profiles: ProfileCache) -> None:
        self.context = context
        self.profiles = profiles

    async def plan_fulfillment(
        self,
        lines: Sequence[d.Line],
        *,
        pickup_location_id: str,
        delivery_point: d.GeoPoint | None,
        same_day: bool,
        profile: str = "",
    ) -> rules.Plan:
        if bool(pickup_location_id) == (delivery_point is not None):
            raise d.invalid(
                "pickup_location_id",
                "give either a pickup store or a delivery point",
                "DESTINATION_REQUIRED",
            )
        profile = profiles.check_profile_name(
            profile or profiles.DEFAULT_PROFILE, "sourcing_profile"
        )
        version = await self.profiles.active(profile)
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
        # Which daily capacity the units would use: parcels from stores, or same-day.
        method = (
            None
            if pickup is not None
            else d.AllocationMethod.SAME_DAY
            if same_day
            else d.AllocationMethod.SHIP
        )
        now = self.context.clock()
        limited: dict[str, UsageKey] = {}
        for location in locations.values():
            kind = location.capacity_kind(method)
            if kind is not None and location.capacity(kind).limited:
                limited[location.id] = (location.id, location.local_day(now), kind)
        skus = list(dict.fromkeys(line.sku for line in lines))
        async with self.context.db.unit_of_work() as uow:
            levels = await StockStore(uow.session).levels_for_skus(skus)
            usage = await CapacityStore(uow.session).read(limited.values())
        available: dict[str, dict[str, int]] = {}
        for level in levels:
            available.setdefault(level.location_id, {})[level.sku] = level.available_to_promise
        candidates = []
        for loc in locations.values():
            key = limited.get(loc.id)
            used = usage.get(key, rules.CapacityUse()) if key else None
            capacity = loc.capacity(key[2]) if key else d.NO_LIMIT
            candidates.append(
                rules.Candidate(
                    loc,
                    d.distance_km(origin, loc.geo_point),
                    available.get(loc.id, {}),
                    units_left=used.left(capacity) if used else None,
                    capacity_share_left=used.share_left(capacity) if used else 1.0,
                )
            )
        if pickup is not None:
            plan = rules.plan_pickup(lines, pickup, candidates, version.rules)
        else:
            plan = rules.plan_delivery(lines, candidates, same_day=same_day, rules=version.rules)
        return replace(
            plan,
            explanation=(f"decided by {version.name}", *plan.explanation),
            profile=version.profile,
            profile_version=version.version,
        )
