"""Inventory use cases: locations (DCs, FCs, stores) and the cache every read path uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.inventory import domain as d
from services.inventory.store import LocationStore
from services.inventory.usecases.access import require_writer
from tenpo.kit.auth import Principal
from tenpo.kit.cache import RefreshingValue
from tenpo.kit.db import Database
from tenpo.kit.errors import AlreadyExists, FailedPrecondition, NotFound, check_etag
from tenpo.kit.idempotency import idempotent


def location_not_found(location_id: str) -> NotFound:
    return NotFound(
        f"no location {location_id!r}",
        reason="LOCATION_NOT_FOUND",
        metadata={"location_id": location_id},
    )


class LocationCache:
    """Every location, re-read at most every ``ttl`` seconds (dropped on our own writes):
    sourcing, nearby search and thresholds read it on every call, and locations change
    rarely. Read it before a transaction takes its connection (see ``common.announce``)."""

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._value = RefreshingValue(self._load, ttl)

    async def _load(self) -> dict[str, d.Location]:
        async with self._db.unit_of_work() as uow:
            found = await LocationStore(uow.session).all()
        return {loc.id: loc for loc in found}

    async def all(self) -> dict[str, d.Location]:
        return await self._value.get()

    def invalidate(self) -> None:
        self._value.invalidate()


class Locations:
    def __init__(self, db: Database, cache: LocationCache) -> None:
        self.db = db
        self.cache = cache

    async def get(self, location_id: str) -> d.Location:
        location = (await self.cache.all()).get(location_id)
        if location is None:
            async with self.db.unit_of_work() as uow:
                location = await LocationStore(uow.session).get(location_id)
        if location is None:
            raise location_not_found(location_id)
        return location

    async def list(
        self, *, type: d.LocationType | None, after: str, limit: int
    ) -> list[d.Location]:
        async with self.db.unit_of_work() as uow:
            return await LocationStore(uow.session).list_page(type=type, after=after, limit=limit)

    async def create(
        self, principal: Principal, location: d.Location, *, request_id: str, request: Message
    ) -> d.Location:
        require_writer(principal)
        location = replace(location.validate(), version=1)
        async with self.db.unit_of_work() as uow:
            store = LocationStore(uow.session)

            async def create() -> wrappers_pb2.StringValue:
                if await store.insert(location) is None:
                    raise AlreadyExists(
                        f"location {location.id!r} exists",
                        reason="LOCATION_ALREADY_EXISTS",
                        metadata={"location_id": location.id},
                    )
                return wrappers_pb2.StringValue(value=location.id)

            await idempotent(
                uow,
                scope="CreateLocation",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            created = await store.get(location.id)
            await uow.commit()
        self.cache.invalidate()
        assert created is not None
        return created

    async def update(
        self, principal: Principal, location_id: str, changes: Mapping[str, Any], *, etag: str
    ) -> d.Location:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = LocationStore(uow.session)
            current = await store.get(location_id, for_update=True)
            if current is None:
                raise location_not_found(location_id)
            check_etag(etag, current.etag, "location")
            updated = replace(current, **changes, version=current.version + 1).validate()
            saved = await store.update(updated)
            await uow.commit()
        self.cache.invalidate()
        return saved

    async def delete(self, principal: Principal, location_id: str, etag: str) -> None:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = LocationStore(uow.session)
            current = await store.get(location_id, for_update=True)
            if current is None:
                raise location_not_found(location_id)
            check_etag(etag, current.etag, "location")
            if await store.holds_stock(location_id):
                raise FailedPrecondition(
                    "the location still holds, reserves or awaits stock",
                    reason="LOCATION_HAS_STOCK",
                    metadata={"location_id": location_id},
                )
            await store.delete(location_id)
            await uow.commit()
        self.cache.invalidate()
