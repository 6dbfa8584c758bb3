"""Inventory use cases: reservations — hold stock for an owner (a cart, an order) until it
is committed as a sale, released, or expires. ReserveStock goes through the batcher
(``batcher.py``); every other command is its own transaction."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.protobuf import wrappers_pb2
from opentelemetry import context as otel_context

from services.inventory import convert
from services.inventory import domain as d
from services.inventory.domain import sourcing
from services.inventory.store import (
    CapacityStore,
    LocationLimits,
    ReservationStore,
    ReservationWriter,
    StockStore,
    UsageKey,
    movement_row,
)
from services.inventory.usecases.access import (
    actor_of,
    may_access,
    require_committer,
    require_reserver,
)
from services.inventory.usecases.batcher import ReservationBatcher
from services.inventory.usecases.common import Context, announce, atp_of
from services.inventory.usecases.profiles import ProfileCache
from tenpo.inventory.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import Aborted, DomainError, InvalidArgument, NotFound
from tenpo.kit.idempotency import KeyClaim, check_request_id, idempotency_key
from tenpo.kit.metrics import RESERVATIONS_REFUSED
from tenpo.kit.outage import OutageLog
from tenpo.kit.telemetry import resumed_trace

log = logging.getLogger(__name__)


def _reservation_not_found(reservation_id: uuid.UUID) -> NotFound:
    return NotFound(
        "no such reservation",
        reason="RESERVATION_NOT_FOUND",
        metadata={"reservation_id": str(reservation_id)},
    )


#: Methods whose units use a location's daily capacity.
CAPACITY_METHODS = frozenset({d.AllocationMethod.SHIP, d.AllocationMethod.SAME_DAY})


def _with_limits(
    cached: Mapping[str, d.Location], limits: Mapping[str, LocationLimits]
) -> dict[str, d.Location]:
    """The cached locations with their capacity settings as just read (a location the
    cache does not know yet gets a stand-in carrying only what capacity needs)."""
    fresh = {}
    for location_id, limit in limits.items():
        base = cached.get(location_id) or d.Location(
            location_id, location_id, limit.type, d.GeoPoint(0, 0)
        )
        fresh[location_id] = replace(
            base,
            type=limit.type,
            time_zone=limit.time_zone,
            ship_from_store_capacity=limit.ship_from_store_capacity,
            same_day_capacity=limit.same_day_capacity,
        )
    return fresh


def _track(
    days: dict[sourcing.CapacityKey, UsageKey],
    location: d.Location | None,
    method: d.AllocationMethod | None,
    now: datetime,
) -> None:
    """Note the daily capacity a line leaving ``location`` by ``method`` would use, when the
    location limits it (unlimited ones are not counted)."""
    kind = location.capacity_kind(method) if location else None
    if location is not None and kind is not None and location.capacity(kind).limited:
        days[(location.id, kind)] = (location.id, location.local_day(now), kind)


def _counted(
    days: Mapping[sourcing.CapacityKey, UsageKey],
    locations: Mapping[str, d.Location],
    line: d.Line,
    customer_id: str,
) -> dict[str, Any]:
    """The capacity a placed line counted against, so releasing it can give it back (none
    for a customer's own hold)."""
    location = locations.get(line.location_id) if not customer_id else None
    kind = location.capacity_kind(line.method) if location else None
    day = days.get((line.location_id, kind)) if kind else None
    return {
        "capacity_kind": int(kind) if day and kind else None,
        "capacity_day": day[1] if day else None,
    }


def _grouped(
    levels: Iterable[d.StockLevel], cause: Mapping[d.Key, int]
) -> dict[int, list[d.StockLevel]]:
    """Changed levels by the index of the request that changed each last, in request order."""
    groups: dict[int, list[d.StockLevel]] = {}
    for level in levels:
        groups.setdefault(cause.get(level.key, -1), []).append(level)
    return dict(sorted(groups.items()))


class Reservations:
    def __init__(
        self,
        context: Context,
        *,
        batch_workers: int = 2,
        max_batch: int = 500,
        batch_target: int = 1,
        batch_linger: float = 0.0,
        customer_limits: d.CustomerLimits | None = None,
        profiles: ProfileCache | None = None,
    ) -> None:
        self.context = context
        self.profiles = profiles or ProfileCache(context.db)
        self.limits = customer_limits or d.CustomerLimits()
        self.db = context.db
        self.clock = context.clock
        self.batcher = ReservationBatcher(
            self,
            workers=batch_workers,
            max_batch=max_batch,
            target=batch_target,
            linger=batch_linger,
        )

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
        customer = principal.kind is PrincipalKind.CUSTOMER
        owner = d.check_owner(owner)
        if customer and ttl is None:
            ttl = min(d.DEFAULT_TTL, self.limits.max_ttl)
        ttl = d.check_ttl(ttl)
        if customer:
            d.check_customer_reservation(principal.subject, owner, lines, ttl, self.limits)
        request = d.ReservationRequest(
            owner=owner,
            lines=tuple(lines),
            ttl=ttl,
            key=idempotency_key(check_request_id(request_id), principal) if request_id else "",
            fingerprint=fingerprint,
            actor=actor_of(principal),
            customer_id=principal.subject if customer else "",
            near=near.validate("near") if near else None,
        )
        return await self.batcher.submit(request)

    async def reserve_batch(
        self,
        requests: Sequence[d.ReservationRequest],
        traces: Sequence[otel_context.Context] | None = None,
        *,
        attempt: int = 1,
    ) -> list[d.Reservation | Exception]:
        """Decide a batch of reservations in one transaction; one result per request.

        Round trips: BEGIN, the row locks (canonical order), one statement writing
        reservations, lines, levels, idempotency keys and the outbox, COMMIT. A request_id
        seen before is looked up only when it matters: a placed replay makes its key's
        claim fail (the whole batch then retries, looking every key up first), a replay
        that could not be placed is looked up before the batch answers. The kit's meaning
        holds: the same key and body get the stored reservation, another body
        REQUEST_ID_REUSED, and a request that fails claims nothing.

        ``traces`` (the batcher's, one per request): a level's events go out in the trace
        of the request that changed it last in the batch, so a consumer continues the trace
        of the call that caused what it hears."""
        first_of_key: dict[str, int] = {}
        later: list[int] = []
        for i, request in enumerate(requests):
            if request.key and request.key in first_of_key:
                later.append(i)
            elif request.key:
                first_of_key[request.key] = i
        if later:
            # The batcher never puts one key twice in a batch; a batch built otherwise
            # decides the repeats after the first has claimed (or freed) the key.
            first = [i for i in range(len(requests)) if i not in set(later)]
            decided: dict[int, d.Reservation | Exception] = {}
            for part in (first, later):
                answers = await self.reserve_batch(
                    [requests[i] for i in part], [traces[i] for i in part] if traces else None
                )
                decided.update(zip(part, answers, strict=True))
            return [decided[i] for i in range(len(requests))]
        now = self.clock()
        retry = False
        results: list[d.Reservation | Exception | None] = [None] * len(requests)
        replays: dict[int, uuid.UUID] = {}
        placed: dict[int, list[d.Line]] = {}
        ids: dict[int, uuid.UUID] = {}
        locations = await self.context.locations.all()
        default_rules, _ = await self.profiles.default_rules()
        async with self.db.driver_unit_of_work() as uow:
            writer = ReservationWriter(uow.connection)

            async def look_up(indexes: Iterable[int]) -> None:
                wanted = {requests[i].key: i for i in indexes}
                for key, stored in (await writer.answers(list(wanted))).items():
                    i = wanted[key]
                    try:
                        answer = stored.answer(requests[i].fingerprint, wrappers_pb2.StringValue)
                    except InvalidArgument as reused:
                        results[i] = reused
                    else:
                        results[i] = None
                        replays[i] = uuid.UUID(answer.value)

            if attempt > 1:
                await look_up(first_of_key.values())
            todo = [i for i in range(len(requests)) if results[i] is None and i not in replays]
            anywhere: list[d.Location] = []
            if any(not line.location_id for i in todo for line in requests[i].lines):
                anywhere = [loc for loc in locations.values() if loc.ships]
            keys: set[d.Key] = set()
            for i in todo:
                for line in requests[i].lines:
                    if line.location_id:
                        keys.add((line.sku, line.location_id))
                    else:
                        keys.update((line.sku, loc.id) for loc in anywhere)
            # Customers' holds are counted under a per-customer lock taken before the level
            # locks, so concurrent calls (any worker, any replica) cannot pass the cap together.
            holds = await writer.lock_customers_and_count_holds(
                (requests[i].customer_id for i in todo if requests[i].customer_id), now
            )
            original = await writer.lock(keys)
            # Then the daily capacities the batch may use (after the levels: the lock order).
            # Only stores holding a floating SKU can be chosen for it: locking the others'
            # capacity rows would serialize every "anywhere" batch of the network on them.
            floating = {ln.sku for i in todo for ln in requests[i].lines if not ln.location_id}
            stocked = {
                location_id
                for (sku, location_id), level in original.items()
                if sku in floating and level.available_to_promise > 0
            }
            involved = {
                line.location_id
                for i in todo
                for line in requests[i].lines
                if line.location_id and line.method in CAPACITY_METHODS
            } | {loc.id for loc in anywhere if loc.id in stocked}
            # The limits as committed now, not as the cache last saw them: a store created or
            # limited through another replica a moment ago is held to its limit here too.
            current = dict(locations) | _with_limits(
                locations, await writer.location_limits(involved)
            )
            anywhere = [current.get(loc.id, loc) for loc in anywhere]
            days: dict[sourcing.CapacityKey, UsageKey] = {}
            for i in todo:
                for line in requests[i].lines:
                    _track(days, current.get(line.location_id), line.method, now)
            for location in anywhere:
                if location.id in stocked:
                    _track(days, location, d.AllocationMethod.SHIP, now)
            locked_usage = await writer.lock_usage(days.values())
            original_usage = {key: locked_usage[day] for key, day in days.items()}
            usage = dict(original_usage)
            working = dict(original)
            refused: list[int] = []
            for i in todo:
                customer_id = requests[i].customer_id
                try:
                    if customer_id and holds.get(customer_id, 0) >= self.limits.max_active:
                        raise d.too_many_active(self.limits.max_active)
                    placed[i] = sourcing.allocate_reservation(
                        requests[i].lines,
                        working,
                        anywhere,
                        requests[i].near,
                        rules=default_rules,
                        # A customer's own hold (a cart) respects the capacity but uses none:
                        # otherwise shoppers' holds could use up a store's day.
                        usage=dict(usage) if customer_id else usage,
                        locations=current,
                    )
                except DomainError as error:
                    results[i] = error
                    refused.append(i)
                else:
                    if customer_id:
                        holds[customer_id] = holds.get(customer_id, 0) + 1
            if attempt == 1:
                # A retry of an earlier success must get that reservation back, not a
                # refusal because the stock has gone meanwhile.
                await look_up(i for i in todo if i not in placed and requests[i].key)
            for refusal in (results[i] for i in refused if i not in replays):
                if isinstance(refusal, DomainError):
                    uow.count(RESERVATIONS_REFUSED, reason=refusal.reason)
            ids = {i: uuid.uuid4() for i in placed}
            # We hold these rows, so what the write will leave is known exactly now, and the
            # events travel in the same statement as the rows.
            changed = [
                replace(level, version=level.version + 1, updated_at=now)
                for key, level in working.items()
                if level != original.get(key)
            ]
            cause = {
                (line.sku, line.location_id): i for i, lines in placed.items() for line in lines
            }
            before = atp_of(original)
            for i, levels in _grouped(changed, cause).items():
                with resumed_trace(traces[i] if traces and i >= 0 else None):
                    announce(uow, locations, before, levels, now)
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
                        "actor": requests[i].actor,
                        "key": requests[i].key or None,
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
                        "method": int(line.method or 0),
                        **_counted(days, current, line, requests[i].customer_id),
                    }
                    for i, lines in placed.items()
                    for n, line in enumerate(lines)
                ],
                changed,
                [
                    KeyClaim(
                        requests[i].key,
                        requests[i].fingerprint,
                        wrappers_pb2.StringValue(value=str(ids[i])),
                    )
                    for i in placed
                    if requests[i].key
                ],
                uow.take_events(),
                {
                    days[key]: use
                    for key, use in usage.items()
                    if use != original_usage[key] and key in days
                },
            )
            if recorded:
                await uow.commit()
            else:
                # A concurrent call or an earlier one with one of our keys committed first.
                # Nothing of ours is kept; the next attempt finds its reservation and hands
                # it back (or refuses another body).
                retry = True
        if retry:
            # Each retry sees every key that beat it, so only a storm of concurrent retries
            # through several replicas gets this far.
            if attempt >= 5:
                raise Aborted("reservation raced a retry; try again", reason="RESERVATION_RETRY")
            return await self.reserve_batch(requests, traces, attempt=attempt + 1)
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
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    async def get(self, principal: Principal, reservation_id: uuid.UUID) -> d.Reservation:
        principal.require_authenticated()
        async with self.db.unit_of_work() as uow:
            found = await ReservationStore(uow.session).get(reservation_id)
        if found is None or not may_access(principal, found):
            raise _reservation_not_found(reservation_id)
        return found

    async def extend(
        self, principal: Principal, reservation_id: uuid.UUID, ttl: Any
    ) -> d.Reservation:
        principal.require_authenticated()
        if ttl is None:
            raise d.invalid("ttl", "required", "TTL_INVALID")
        ttl = d.check_ttl(ttl)
        if principal.kind is PrincipalKind.CUSTOMER:
            d.check_customer_ttl(ttl, self.limits)
        async with self.db.unit_of_work() as uow:
            store = ReservationStore(uow.session)
            found = await store.get(reservation_id, for_update=True)
            if found is None or not may_access(principal, found):
                raise _reservation_not_found(reservation_id)
            now = self.clock()
            found.require_active(now)
            if principal.kind is PrincipalKind.CUSTOMER:
                d.check_customer_renewal(found.created_at, now, ttl, self.limits)
            await store.set_state([reservation_id], found.state, expires_at=now + ttl)
            await uow.commit()
        return replace(found, expires_at=now + ttl, updated_at=now)

    async def release(self, principal: Principal, reservation_id: uuid.UUID) -> d.Reservation:
        principal.require_authenticated()
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            store = ReservationStore(uow.session)
            found = await store.get(reservation_id, for_update=True)
            if found is None or not may_access(principal, found):
                raise _reservation_not_found(reservation_id)
            if found.state is d.ReservationState.RELEASED:
                return found  # releasing twice is releasing once
            if found.state is not d.ReservationState.ACTIVE:
                found.require_active(self.clock())
            released = replace(found, state=d.ReservationState.RELEASED, updated_at=self.clock())
            await self._give_back(uow, locations, [found], d.ReservationState.RELEASED)
            uow.add_event(events_pb2.ReservationReleased(reservation=convert.reservation(released)))
            await uow.commit()
        return released

    async def commit(
        self, principal: Principal, reservation_id: uuid.UUID, request_id: str
    ) -> d.Reservation:
        require_committer(principal)
        locations = await self.context.locations.all()
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
                    movement_row(
                        written[(line.sku, line.location_id)],
                        -line.quantity,
                        d.MovementReason.SALE,
                        request_id=request_id,
                        actor=actor_of(principal),
                        reference=f"reservations/{reservation_id}",
                        note=found.owner,
                    )
                    for line in found.lines
                ]
            )
            await store.set_state([reservation_id], d.ReservationState.COMMITTED)
            committed = replace(found, state=d.ReservationState.COMMITTED, updated_at=now)
            uow.add_event(
                events_pb2.ReservationCommitted(reservation=convert.reservation(committed))
            )
            announce(uow, locations, atp_of(locked), written.values(), now)
            await uow.commit()
        return committed

    async def _give_back(
        self,
        uow: UnitOfWork,
        locations: Mapping[str, d.Location],
        found: Sequence[d.Reservation],
        state: d.ReservationState,
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
        await CapacityStore(uow.session).give_back([r.id for r in found])
        await ReservationStore(uow.session).set_state([r.id for r in found], state)
        announce(uow, locations, atp_of(locked), written.values(), self.clock())

    async def expire_due(self, limit: int = 200) -> int:
        """Release one batch of expired reservations; returns how many."""
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            now = self.clock()
            due = await ReservationStore(uow.session).due(now, limit)
            if not due:
                return 0
            await self._give_back(uow, locations, due, d.ReservationState.EXPIRED)
            for reservation in due:
                expired = replace(reservation, state=d.ReservationState.EXPIRED, updated_at=now)
                uow.add_event(
                    events_pb2.ReservationExpired(reservation=convert.reservation(expired))
                )
            await uow.commit()
        log.info("reservations expired", extra={"count": len(due)})
        return len(due)

    async def run_expiry(self, interval: float, batch: int) -> None:
        # A database outage is logged once (and reminded every minute), not on every round.
        outage = OutageLog(log, "database")
        while True:
            try:
                swept = await self.expire_due(batch)
                outage.recovered()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                outage.background_failure(error, "expiring reservations failed; retrying")
                swept = 0
            if swept < batch:
                await asyncio.sleep(interval)
