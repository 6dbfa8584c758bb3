"""Inventory use cases: one method per command or query; each owns its transaction.

Reservations go through :class:`ReservationBatcher`: concurrent ReserveStock calls that touch
the same SKUs are coalesced into one transaction (lock the levels once, decide every request
in arrival order in memory, write once), which is how a flash sale on one hot SKU stays
fast without ever overselling."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.inventory import convert
from services.inventory import domain as d
from services.inventory.store import (
    DEMO_STOCKING_FLAG,
    LocationStore,
    ReservationStore,
    ReservationWriter,
    SkuStore,
    StockStore,
    TransferStore,
)
from tenpo.inventory.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, OutboxEvents, UnitOfWork
from tenpo.kit.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    check_etag,
)
from tenpo.kit.idempotency import idempotent

log = logging.getLogger(__name__)

WRITE_SCOPE = "inventory:write"
READ_SCOPE = "inventory:read"
RESERVE_SCOPE = "inventory:reserve"
MAX_SKUS = 200
SYSTEM_ACTOR = "system:inventory"


# ------------------------------------------------------------------------- authorization


def actor_of(principal: Principal) -> str:
    return f"{principal.kind.value}:{principal.subject}"


def require_writer(principal: Principal) -> None:
    """Stock changes and locations: back-office staff or a trusted service with
    inventory:write."""
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(WRITE_SCOPE)


def sees_details(principal: Principal) -> bool:
    """On-hand and reserved figures are operational data, not for shoppers."""
    return principal.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE) and bool(
        {READ_SCOPE, WRITE_SCOPE, RESERVE_SCOPE} & principal.scopes
    )


def require_reader(principal: Principal) -> None:
    principal.require_authenticated()
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    if not {READ_SCOPE, WRITE_SCOPE} & principal.scopes:
        principal.require_scope(READ_SCOPE)


def _acts_for_any_owner(principal: Principal) -> bool:
    """Staff, services and devices holding a reservation scope act for any owner."""
    return principal.kind in (
        PrincipalKind.STAFF,
        PrincipalKind.SERVICE,
        PrincipalKind.DEVICE,
    ) and bool({WRITE_SCOPE, RESERVE_SCOPE} & principal.scopes)


def require_reserver(principal: Principal) -> None:
    principal.require_authenticated()
    if principal.kind is PrincipalKind.CUSTOMER or _acts_for_any_owner(principal):
        return
    principal.require_scope(RESERVE_SCOPE)


def _may_access(principal: Principal, reservation: d.Reservation) -> bool:
    if principal.kind is PrincipalKind.CUSTOMER:
        return bool(reservation.customer_id) and reservation.customer_id == principal.subject
    return _acts_for_any_owner(principal)


def _reservation_not_found(reservation_id: uuid.UUID) -> NotFound:
    return NotFound(
        "no such reservation",
        reason="RESERVATION_NOT_FOUND",
        metadata={"reservation_id": str(reservation_id)},
    )


def _location_not_found(location_id: str) -> NotFound:
    return NotFound(
        f"no location {location_id!r}",
        reason="LOCATION_NOT_FOUND",
        metadata={"location_id": location_id},
    )


def _request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        "request_id was already used for a different request",
        reason="REQUEST_ID_REUSED",
        field_violations=[FieldViolation("request_id", "already used with other parameters")],
    )


# ---------------------------------------------------------------------------- locations


class LocationCache:
    """Every location, re-read at most every ``ttl`` seconds (dropped on our own writes):
    sourcing, nearby search and thresholds read it on every call, and locations change
    rarely."""

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._ttl = ttl
        self._loaded_at = 0.0
        self._locations: dict[str, d.Location] = {}
        self._lock = asyncio.Lock()

    async def all(self) -> dict[str, d.Location]:
        if time.monotonic() - self._loaded_at < self._ttl:
            return self._locations
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                async with self._db.unit_of_work() as uow:
                    found = await LocationStore(uow.session).all()
                self._locations = {loc.id: loc for loc in found}
                self._loaded_at = time.monotonic()
        return self._locations

    def invalidate(self) -> None:
        self._loaded_at = 0.0


# ------------------------------------------------------------------------------ batching


@dataclass
class _Pending:
    request: d.ReservationRequest
    future: asyncio.Future[d.Reservation]

    @property
    def skus(self) -> frozenset[str]:
        return frozenset(line.sku for line in self.request.lines)


class ReservationBatcher:
    """Coalesces concurrent reservations. Each worker takes every queued request whose SKUs
    no other worker is busy with and decides them in one transaction; requests for a SKU in
    flight wait for the next round, so one hot SKU is one lock holder at a time per process
    (across replicas the row lock orders them).

    Under load (requests were already waiting when a worker's last batch ended) a worker
    lets the next batch fill up to ``target`` requests, waiting at most ``linger`` seconds:
    when the process is busy, every transaction it saves is CPU for answering calls. An idle
    service never waits."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        workers: int,
        max_batch: int,
        target: int = 1,
        linger: float = 0.0,
    ) -> None:
        self._inventory = inventory
        self._worker_count = workers
        self._max_batch = max_batch
        self._target = min(target, max_batch)
        self._linger = linger
        self._queue: deque[_Pending] = deque()
        self._busy: dict[int, frozenset[str]] = {}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    async def submit(self, request: d.ReservationRequest) -> d.Reservation:
        if self._closed:
            raise Unavailable("the service is shutting down", reason="SHUTTING_DOWN")
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(i), name=f"reservation-batcher-{i}")
                for i in range(self._worker_count)
            ]
        future: asyncio.Future[d.Reservation] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        self._wake.set()
        if len(self._queue) >= self._target:
            self._full.set()
        return await future

    def _take(self, worker: int) -> list[_Pending]:
        blocked: set[str] = set().union(*(s for w, s in self._busy.items() if w != worker))
        taken: list[_Pending] = []
        kept: deque[_Pending] = deque()
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():
                continue  # the caller gave up before we started
            if len(taken) < self._max_batch and not (pending.skus & blocked):
                taken.append(pending)
            else:
                # Keep it for a later round; its SKUs stay blocked so arrival order holds.
                blocked |= pending.skus
                kept.append(pending)
        self._queue = kept
        return taken

    async def _fill(self) -> None:
        """Wait until ``target`` requests are queued or ``linger`` has passed."""
        if len(self._queue) >= self._target:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self._linger)

    async def _work(self, worker: int) -> None:
        loaded = False
        while True:
            await self._wake.wait()
            if loaded and self._linger:
                await self._fill()
            batch = self._take(worker)
            if not batch:
                self._wake.clear()
                loaded = False
                continue
            self._busy[worker] = frozenset().union(*(p.skus for p in batch))
            try:
                results = await self._inventory.reserve_batch([p.request for p in batch])
            except Exception as error:  # a database failure fails the whole batch
                log.exception("reservation batch failed", extra={"size": len(batch)})
                failure: Exception = (
                    error
                    if isinstance(error, DomainError)
                    else Unavailable("reservation failed; retry", reason="RESERVATION_RETRY")
                )
                results = [failure] * len(batch)
            finally:
                self._busy.pop(worker, None)
                loaded = bool(self._queue)
                if loaded:
                    self._wake.set()
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def close(self) -> None:
        self._closed = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    Unavailable("the service is shutting down", reason="SHUTTING_DOWN")
                )


# ---------------------------------------------------------------------------- use cases


def demo_quantity(sku: str, location: d.Location) -> int:
    """Deterministic demo stock: plenty in DCs, some in the FC, a few (or none) in stores."""
    digest = int.from_bytes(hashlib.sha256(f"{sku}@{location.id}".encode()).digest()[:4], "big")
    if location.type is d.LocationType.DISTRIBUTION_CENTER:
        return 60 + digest % 140
    if location.type is d.LocationType.FULFILLMENT_CENTER:
        return 20 + digest % 60
    return max(0, digest % 14 - 3)


class Inventory:
    def __init__(
        self,
        db: Database,
        *,
        require_known_skus: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_workers: int = 2,
        max_batch: int = 500,
        batch_target: int = 1,
        batch_linger: float = 0.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.require_known_skus = require_known_skus
        self.locations = LocationCache(db)
        self.batcher = ReservationBatcher(
            self,
            workers=batch_workers,
            max_batch=max_batch,
            target=batch_target,
            linger=batch_linger,
        )

    # ---------------------------------------------------------------- locations

    async def get_location(self, location_id: str) -> d.Location:
        location = (await self.locations.all()).get(location_id)
        if location is None:
            async with self.db.unit_of_work() as uow:
                location = await LocationStore(uow.session).get(location_id)
        if location is None:
            raise _location_not_found(location_id)
        return location

    async def list_locations(
        self, *, type: d.LocationType | None, after: str, limit: int
    ) -> list[d.Location]:
        async with self.db.unit_of_work() as uow:
            return await LocationStore(uow.session).list_page(type=type, after=after, limit=limit)

    async def create_location(
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
        self.locations.invalidate()
        assert created is not None
        return created

    async def update_location(
        self, principal: Principal, location_id: str, changes: Mapping[str, Any], *, etag: str
    ) -> d.Location:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = LocationStore(uow.session)
            current = await store.get(location_id, for_update=True)
            if current is None:
                raise _location_not_found(location_id)
            check_etag(etag, current.etag, "location")
            updated = replace(current, **changes, version=current.version + 1).validate()
            saved = await store.update(updated)
            await uow.commit()
        self.locations.invalidate()
        return saved

    async def delete_location(self, principal: Principal, location_id: str, etag: str) -> None:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            store = LocationStore(uow.session)
            current = await store.get(location_id, for_update=True)
            if current is None:
                raise _location_not_found(location_id)
            check_etag(etag, current.etag, "location")
            if await store.holds_stock(location_id):
                raise FailedPrecondition(
                    "the location still holds, reserves or awaits stock",
                    reason="LOCATION_HAS_STOCK",
                    metadata={"location_id": location_id},
                )
            await store.delete(location_id)
            await uow.commit()
        self.locations.invalidate()

    async def _require_location(self, uow: UnitOfWork, location_id: str) -> d.Location:
        location = await LocationStore(uow.session).get(location_id)
        if location is None:
            raise _location_not_found(location_id)
        return location

    async def _require_known(self, uow: UnitOfWork, skus: Iterable[str]) -> None:
        if not self.require_known_skus:
            return
        unknown = await SkuStore(uow.session).unknown(skus)
        if unknown:
            raise FailedPrecondition(
                f"the catalog does not know SKU(s) {', '.join(unknown)}",
                reason="SKU_UNKNOWN",
                metadata={"skus": " ".join(unknown)},
            )

    # --------------------------------------------------------------- availability

    async def get_availability(
        self, skus: Sequence[str], location_ids: Sequence[str]
    ) -> list[tuple[str, list[d.StockLevel]]]:
        _bounded_skus(skus)
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
            for location in (await self.locations.all()).values()
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

    async def list_stock_levels(
        self, principal: Principal, location_id: str, after: str, limit: int
    ) -> list[d.StockLevel]:
        require_reader(principal)
        d.check_location_id(location_id)
        async with self.db.unit_of_work() as uow:
            await self._require_location(uow, location_id)
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

    # ------------------------------------------------------------- stock changes

    async def adjust_stock(
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
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)

            async def adjust() -> wrappers_pb2.StringValue:
                await self._require_location(uow, location_id)
                if quantity > 0:
                    await self._require_known(uow, [sku])
                level = await stock.lock_one(sku, location_id, create=quantity > 0)
                written = await stock.write([level.adjust(quantity)])
                after = written[level.key]
                (movement,) = await stock.add_movements(
                    [_movement(after, quantity, reason, request_id, actor_of(principal), "", note)]
                )
                await self._announce(uow, {level.key: level.available_to_promise}, [after])
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

    async def set_stock_level(
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
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)

            async def count() -> wrappers_pb2.StringValue:
                await self._require_location(uow, location_id)
                await self._require_known(uow, [sku])
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
                            _movement(
                                written,
                                delta,
                                d.MovementReason.CYCLE_COUNT,
                                request_id,
                                actor_of(principal),
                                "",
                                note,
                            )
                        ]
                    )
                await self._announce(uow, {level.key: level.available_to_promise}, [written])
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

    async def transfer_stock(
        self,
        principal: Principal,
        *,
        sku: str,
        from_location_id: str,
        to_location_id: str,
        quantity: int,
        note: str,
        request_id: str,
        request: Message,
    ) -> dict[str, Any]:
        require_writer(principal)
        d.check_sku(sku)
        d.check_location_id(from_location_id, "from_location_id")
        d.check_location_id(to_location_id, "to_location_id")
        d.check_quantity(quantity)
        if from_location_id == to_location_id:
            raise d.invalid("to_location_id", "must differ from from_location_id", "SAME_LOCATION")
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)
            transfers = TransferStore(uow.session)

            async def move() -> wrappers_pb2.StringValue:
                await self._require_location(uow, from_location_id)
                await self._require_location(uow, to_location_id)
                await self._require_known(uow, [sku])
                await stock.ensure([(sku, to_location_id)])
                source_key, target_key = (sku, from_location_id), (sku, to_location_id)
                locked = await stock.lock([source_key, target_key])
                source = locked.get(source_key) or d.StockLevel(sku, from_location_id)
                target = locked[target_key]
                transfer_id = uuid.uuid4()
                written = await stock.write(
                    [
                        source.take_out(quantity),
                        replace(target, in_transit=target.in_transit + quantity),
                    ]
                )
                await stock.add_movements(
                    [
                        _movement(
                            written[source_key],
                            -quantity,
                            d.MovementReason.TRANSFER_OUT,
                            request_id,
                            actor_of(principal),
                            f"transfers/{transfer_id}",
                            note,
                        )
                    ]
                )
                await transfers.insert(
                    {
                        "id": transfer_id,
                        "sku": sku,
                        "from_location_id": from_location_id,
                        "to_location_id": to_location_id,
                        "quantity": quantity,
                        "state": int(d.TransferState.IN_TRANSIT),
                    }
                )
                await self._announce(
                    uow,
                    {k: v.available_to_promise for k, v in locked.items()},
                    written.values(),
                )
                return wrappers_pb2.StringValue(value=str(transfer_id))

            result = await idempotent(
                uow,
                scope="TransferStock",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=move,
            )
            transfer = await transfers.get(uuid.UUID(result.value))
            await uow.commit()
        assert transfer is not None
        return transfer

    async def receive_transfer(
        self, principal: Principal, transfer_id: uuid.UUID, request_id: str
    ) -> dict[str, Any]:
        require_writer(principal)
        async with self.db.unit_of_work() as uow:
            transfers = TransferStore(uow.session)
            stock = StockStore(uow.session)
            transfer = await transfers.get(transfer_id, for_update=True)
            if transfer is None:
                raise NotFound("no such transfer", reason="TRANSFER_NOT_FOUND")
            if transfer["state"] == d.TransferState.RECEIVED:
                return transfer  # receiving twice is receiving once
            key = (transfer["sku"], transfer["to_location_id"])
            level = (await stock.lock([key]))[key]
            quantity = transfer["quantity"]
            after = replace(
                level, in_transit=level.in_transit - quantity, on_hand=level.on_hand + quantity
            )
            written = (await stock.write([after]))[key]
            await stock.add_movements(
                [
                    _movement(
                        written,
                        quantity,
                        d.MovementReason.TRANSFER_IN,
                        request_id,
                        actor_of(principal),
                        f"transfers/{transfer_id}",
                        "",
                    )
                ]
            )
            received = await transfers.mark_received(transfer_id)
            await self._announce(uow, {key: level.available_to_promise}, [written])
            await uow.commit()
        return received

    # ---------------------------------------------------------------- reservations

    async def reserve(
        self,
        principal: Principal,
        *,
        owner: str,
        lines: Sequence[d.Line],
        ttl: Any,
        request_id: str,
        fingerprint: bytes,
        near: d.GeoPoint | None,
    ) -> d.Reservation:
        require_reserver(principal)
        if len(request_id) > 128:
            raise d.invalid("request_id", "at most 128 characters", "REQUEST_ID_INVALID")
        request = d.ReservationRequest(
            owner=d.check_owner(owner),
            lines=tuple(lines),
            ttl=d.check_ttl(ttl),
            request_id=request_id,
            fingerprint=fingerprint,
            actor=actor_of(principal),
            customer_id=principal.subject if principal.kind is PrincipalKind.CUSTOMER else "",
            near=near.validate("near") if near else None,
        )
        return await self.batcher.submit(request)

    async def reserve_batch(
        self, requests: Sequence[d.ReservationRequest], *, attempt: int = 1
    ) -> list[d.Reservation | Exception]:
        """Decide a batch of reservations in one transaction; one result per request.

        Round trips: BEGIN, the row locks (canonical order), one statement writing
        reservations, lines and levels, the outbox, COMMIT. A request_id seen before is
        looked up only when it matters: a placed replay makes the insert conflict (the whole
        batch then retries, looking every request_id up first), a replay that could not be
        placed is looked up before the batch answers."""
        now = self.clock()
        retry = False
        results: list[d.Reservation | Exception | None] = [None] * len(requests)
        first_with_id: dict[str, int] = {}
        followers: dict[int, int] = {}
        for i, request in enumerate(requests):
            if request.request_id:
                if request.request_id in first_with_id:
                    followers[i] = first_with_id[request.request_id]
                else:
                    first_with_id[request.request_id] = i
        replays: dict[int, uuid.UUID] = {}
        placed: dict[int, list[d.Line]] = {}
        ids: dict[int, uuid.UUID] = {}
        async with self.db.driver_unit_of_work() as uow:
            writer = ReservationWriter(uow.connection)

            async def look_up(indexes: Iterable[int]) -> None:
                wanted = {requests[i].request_id: i for i in indexes}
                for request_id, (existing_id, fingerprint) in (
                    await writer.by_request_ids(list(wanted))
                ).items():
                    i = wanted[request_id]
                    results[i] = None
                    if fingerprint != requests[i].fingerprint:
                        results[i] = _request_id_reused()
                    else:
                        replays[i] = existing_id

            if attempt > 1:
                await look_up(first_with_id.values())
            todo = [
                i
                for i in range(len(requests))
                if results[i] is None and i not in followers and i not in replays
            ]
            anywhere: list[d.Location] = []
            if any(not line.location_id for i in todo for line in requests[i].lines):
                anywhere = [loc for loc in (await self.locations.all()).values() if loc.ships]
            keys: set[d.Key] = set()
            for i in todo:
                for line in requests[i].lines:
                    if line.location_id:
                        keys.add((line.sku, line.location_id))
                    else:
                        keys.update((line.sku, loc.id) for loc in anywhere)
            original = await writer.lock(keys)
            working = dict(original)
            for i in todo:
                try:
                    placed[i] = d.allocate_reservation(
                        requests[i].lines, working, anywhere, requests[i].near
                    )
                except DomainError as error:
                    results[i] = error
            if attempt == 1:
                # A retry of an earlier success must get that reservation back, not a
                # refusal because the stock has gone meanwhile.
                await look_up(
                    i
                    for i in todo
                    if i not in placed and requests[i].request_id and i not in followers
                )
            ids = {i: uuid.uuid4() for i in placed}
            # We hold these rows, so what the write will leave is known exactly now, and the
            # events travel in the same statement as the rows.
            changed = [
                replace(level, version=level.version + 1, updated_at=now)
                for key, level in working.items()
                if level != original.get(key)
            ]
            await self._announce(
                uow, {key: level.available_to_promise for key, level in original.items()}, changed
            )
            recorded = await writer.record(
                [
                    {
                        "id": ids[i],
                        "owner": requests[i].owner,
                        "customer_id": requests[i].customer_id,
                        "state": int(d.ReservationState.ACTIVE),
                        "expires_at": now + requests[i].ttl,
                        "created_at": now,
                        "updated_at": now,
                        "request_id": requests[i].request_id or None,
                        "request_hash": requests[i].fingerprint,
                        "actor": requests[i].actor,
                    }
                    for i in placed
                ],
                [
                    {
                        "reservation_id": ids[i],
                        "line_no": n,
                        "sku": line.sku,
                        "location_id": line.location_id,
                        "quantity": line.quantity,
                    }
                    for i, lines in placed.items()
                    for n, line in enumerate(lines)
                ],
                changed,
                uow.take_events(),
            )
            if recorded:
                await uow.commit()
            else:
                # A concurrent call or an earlier one with one of our request_ids committed
                # first. Nothing of ours is kept; the next attempt finds its reservation and
                # hands it back.
                retry = True
        if retry:
            # Each retry sees every request_id that beat it, so only a storm of concurrent
            # retries through several replicas gets this far.
            if attempt >= 5:
                raise Aborted("reservation raced a retry; try again", reason="RESERVATION_RETRY")
            return await self.reserve_batch(requests, attempt=attempt + 1)
        for i, lines in placed.items():
            results[i] = d.Reservation(
                id=ids[i],
                owner=requests[i].owner,
                lines=tuple(lines),
                state=d.ReservationState.ACTIVE,
                expires_at=now + requests[i].ttl,
                created_at=now,
                updated_at=now,
                customer_id=requests[i].customer_id,
            )
        if replays:
            async with self.db.unit_of_work() as reader:
                found = {
                    r.id: r
                    for r in await ReservationStore(reader.session).get_many(list(replays.values()))
                }
            for i, reservation_id in replays.items():
                results[i] = found[reservation_id]
        for i, first in followers.items():
            same = requests[i].fingerprint == requests[first].fingerprint
            results[i] = results[first] if same else _request_id_reused()
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    async def get_reservation(
        self, principal: Principal, reservation_id: uuid.UUID
    ) -> d.Reservation:
        principal.require_authenticated()
        async with self.db.unit_of_work() as uow:
            found = await ReservationStore(uow.session).get(reservation_id)
        if found is None or not _may_access(principal, found):
            raise _reservation_not_found(reservation_id)
        return found

    async def extend_reservation(
        self, principal: Principal, reservation_id: uuid.UUID, ttl: Any
    ) -> d.Reservation:
        principal.require_authenticated()
        if ttl is None:
            raise d.invalid("ttl", "required", "TTL_INVALID")
        ttl = d.check_ttl(ttl)
        async with self.db.unit_of_work() as uow:
            store = ReservationStore(uow.session)
            found = await store.get(reservation_id, for_update=True)
            if found is None or not _may_access(principal, found):
                raise _reservation_not_found(reservation_id)
            now = self.clock()
            found.require_active(now)
            await store.set_state([reservation_id], found.state, expires_at=now + ttl)
            await uow.commit()
        return replace(found, expires_at=now + ttl, updated_at=now)

    async def release_reservation(
        self, principal: Principal, reservation_id: uuid.UUID
    ) -> d.Reservation:
        principal.require_authenticated()
        async with self.db.unit_of_work() as uow:
            store = ReservationStore(uow.session)
            found = await store.get(reservation_id, for_update=True)
            if found is None or not _may_access(principal, found):
                raise _reservation_not_found(reservation_id)
            if found.state is d.ReservationState.RELEASED:
                return found  # releasing twice is releasing once
            if found.state is not d.ReservationState.ACTIVE:
                found.require_active(self.clock())
            released = replace(found, state=d.ReservationState.RELEASED, updated_at=self.clock())
            await self._give_back(uow, [found], d.ReservationState.RELEASED)
            uow.add_event(events_pb2.ReservationReleased(reservation=convert.reservation(released)))
            await uow.commit()
        return released

    async def commit_reservation(
        self, principal: Principal, reservation_id: uuid.UUID, request_id: str
    ) -> d.Reservation:
        principal.require_authenticated()
        if not _acts_for_any_owner(principal) or principal.kind is PrincipalKind.DEVICE:
            principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
            principal.require_scope(WRITE_SCOPE)
        async with self.db.unit_of_work() as uow:
            store = ReservationStore(uow.session)
            stock = StockStore(uow.session)
            found = await store.get(reservation_id, for_update=True)
            if found is None:
                raise _reservation_not_found(reservation_id)
            if found.state is d.ReservationState.COMMITTED:
                return found
            now = self.clock()
            found.require_active(now)
            locked = await stock.lock((line.sku, line.location_id) for line in found.lines)
            working = dict(locked)
            for line in found.lines:
                key = (line.sku, line.location_id)
                working[key] = working[key].sell_reserved(line.quantity)
            written = await stock.write(list(working.values()))
            # One movement per line: a reservation may hold the same level only once (lines
            # are merged), so on_hand_after is exact.
            await stock.add_movements(
                [
                    _movement(
                        written[(line.sku, line.location_id)],
                        -line.quantity,
                        d.MovementReason.SALE,
                        request_id,
                        actor_of(principal),
                        f"reservations/{reservation_id}",
                        found.owner,
                    )
                    for line in found.lines
                ]
            )
            await store.set_state([reservation_id], d.ReservationState.COMMITTED)
            committed = replace(found, state=d.ReservationState.COMMITTED, updated_at=now)
            uow.add_event(
                events_pb2.ReservationCommitted(reservation=convert.reservation(committed))
            )
            await self._announce(
                uow, {k: v.available_to_promise for k, v in locked.items()}, written.values()
            )
            await uow.commit()
        return committed

    async def _give_back(
        self, uow: UnitOfWork, found: Sequence[d.Reservation], state: d.ReservationState
    ) -> None:
        stock = StockStore(uow.session)
        locked = await stock.lock(
            (line.sku, line.location_id) for reservation in found for line in reservation.lines
        )
        working = dict(locked)
        for reservation in found:
            for line in reservation.lines:
                key = (line.sku, line.location_id)
                working[key] = working[key].release(line.quantity)
        written = await stock.write([v for k, v in working.items() if v != locked[k]])
        await ReservationStore(uow.session).set_state([r.id for r in found], state)
        await self._announce(
            uow, {k: v.available_to_promise for k, v in locked.items()}, written.values()
        )

    async def expire_due(self, limit: int = 200) -> int:
        """Release one batch of expired reservations; returns how many."""
        async with self.db.unit_of_work() as uow:
            now = self.clock()
            due = await ReservationStore(uow.session).due(now, limit)
            if not due:
                return 0
            await self._give_back(uow, due, d.ReservationState.EXPIRED)
            for reservation in due:
                expired = replace(reservation, state=d.ReservationState.EXPIRED, updated_at=now)
                uow.add_event(
                    events_pb2.ReservationExpired(reservation=convert.reservation(expired))
                )
            await uow.commit()
        log.info("reservations expired", extra={"count": len(due)})
        return len(due)

    async def run_expiry(self, interval: float, batch: int) -> None:
        while True:
            try:
                swept = await self.expire_due(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiring reservations failed; retrying")
                swept = 0
            if swept < batch:
                await asyncio.sleep(interval)

    # -------------------------------------------------------------------- sourcing

    async def plan_fulfillment(
        self,
        lines: Sequence[d.Line],
        *,
        pickup_location_id: str,
        delivery_point: d.GeoPoint | None,
        same_day: bool,
    ) -> d.Plan:
        if bool(pickup_location_id) == (delivery_point is not None):
            raise d.invalid(
                "pickup_location_id",
                "give either a pickup store or a delivery point",
                "DESTINATION_REQUIRED",
            )
        locations = await self.locations.all()
        origin: d.GeoPoint
        pickup: d.Location | None = None
        if pickup_location_id:
            pickup = locations.get(pickup_location_id)
            if pickup is None:
                raise _location_not_found(pickup_location_id)
            origin = pickup.geo_point
        else:
            assert delivery_point is not None
            origin = delivery_point.validate("delivery_point")
        skus = list(dict.fromkeys(line.sku for line in lines))
        async with self.db.unit_of_work() as uow:
            levels = await StockStore(uow.session).levels_for_skus(skus)
        available: dict[str, dict[str, int]] = {}
        for level in levels:
            available.setdefault(level.location_id, {})[level.sku] = level.available_to_promise
        candidates = [
            d.Candidate(loc, d.distance_km(origin, loc.geo_point), available.get(loc.id, {}))
            for loc in locations.values()
        ]
        if pickup is not None:
            return d.plan_pickup(lines, pickup, candidates)
        return d.plan_delivery(lines, candidates, same_day=same_day)

    # ------------------------------------------------------------ catalog projection

    async def record_product(
        self, uow: UnitOfWork, product_id: str, skus: Sequence[str], *, archived: bool
    ) -> None:
        store = SkuStore(uow.session)
        new = await store.upsert(product_id, skus, archived=archived)
        if new and await store.flag(DEMO_STOCKING_FLAG):
            await self.stock_demo(uow, new)

    async def archive_skus(self, uow: UnitOfWork, skus: Sequence[str]) -> None:
        await SkuStore(uow.session).archive(skus)

    async def stock_demo(self, uow: UnitOfWork, skus: Sequence[str]) -> None:
        """Receive deterministic demo stock for ``skus`` at every location that has none."""
        locations = await LocationStore(uow.session).all()
        stock = StockStore(uow.session)
        keys = [(sku, loc.id) for sku in skus for loc in locations]
        await stock.ensure(keys)
        locked = await stock.lock(keys)
        by_id = {loc.id: loc for loc in locations}
        receipts = [
            (level, demo_quantity(level.sku, by_id[level.location_id]))
            for level in locked.values()
            if level.on_hand == 0 and level.version == 0
        ]
        written = await stock.write([level.adjust(q) for level, q in receipts])
        await stock.add_movements(
            [
                _movement(
                    written[level.key],
                    q,
                    d.MovementReason.RECEIPT,
                    "",
                    SYSTEM_ACTOR,
                    "",
                    "demo stock",
                )
                for level, q in receipts
                if q
            ]
        )
        for level in written.values():
            # Opening stock is news for live displays, not a "back in stock" for shoppers.
            uow.add_event(_stock_changed(level, self.clock()))

    async def enable_demo_stocking(self) -> None:
        async with self.db.unit_of_work() as uow:
            store = SkuStore(uow.session)
            await store.set_flag(DEMO_STOCKING_FLAG, True)
            known = await store.all_skus()
            if known:
                await self.stock_demo(uow, known)
            await uow.commit()

    # ------------------------------------------------------------------- events

    async def _announce(
        self, uow: OutboxEvents, before: Mapping[d.Key, int], after: Iterable[d.StockLevel]
    ) -> None:
        locations = await self.locations.all()
        now = self.clock()
        for level in after:
            uow.add_event(_stock_changed(level, now))
            location = locations.get(level.location_id)
            threshold = location.low_stock_threshold if location else 0
            atp = level.available_to_promise
            for signal in d.stock_signals(before.get(level.key, 0), atp, threshold):
                if signal is d.StockSignal.OUT_OF_STOCK:
                    uow.add_event(
                        events_pb2.OutOfStock(sku=level.sku, location_id=level.location_id)
                    )
                elif signal is d.StockSignal.BACK_IN_STOCK:
                    uow.add_event(
                        events_pb2.BackInStock(
                            sku=level.sku, location_id=level.location_id, available_to_promise=atp
                        )
                    )
                else:
                    uow.add_event(
                        events_pb2.LowStock(
                            sku=level.sku,
                            location_id=level.location_id,
                            available_to_promise=atp,
                            threshold=threshold,
                        )
                    )


def _stock_changed(level: d.StockLevel, now: datetime) -> events_pb2.StockChanged:
    return events_pb2.StockChanged(
        sku=level.sku,
        location_id=level.location_id,
        available_to_promise=level.available_to_promise,
        on_hand=level.on_hand,
        reserved=level.reserved,
        version=level.version,
        change_time=convert.timestamp(level.updated_at or now),
    )


def _movement(
    level: d.StockLevel,
    quantity: int,
    reason: d.MovementReason,
    request_id: str,
    actor: str,
    reference: str,
    note: str,
) -> dict[str, Any]:
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


def _bounded_skus(skus: Sequence[str], path: str = "skus") -> None:
    if not skus:
        raise d.invalid(path, "at least one SKU", "SKUS_REQUIRED")
    if len(skus) > MAX_SKUS:
        raise d.invalid(path, f"at most {MAX_SKUS}", "TOO_MANY_SKUS")
    for i, sku in enumerate(skus):
        d.check_sku(sku, f"{path}[{i}]")
