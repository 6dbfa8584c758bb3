"""Inventory persistence: rows ⇄ domain objects over the unit of work's session."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.models import (
    flags,
    known_skus,
    locations,
    movements,
    reservation_lines,
    reservations,
    stock_levels,
    transfers,
)
from tenpo.kit.db import outbox_fragment
from tenpo.kit.idempotency import KeyClaim, StoredAnswer, claim_keys, stored_answers

DEMO_STOCKING_FLAG = "demo_stocking"
#: The kit idempotency scope of ReserveStock.
RESERVE_SCOPE = "ReserveStock"

#: The hot statement's own parameters ($1..$19); the kit numbers its fragments after them.
_RESERVATION_PARAMETERS = 19


@functools.lru_cache(maxsize=4)
def _record_reservations(claim: str, outbox: str) -> str:
    """Reservations, their lines, the levels' new values, the request_ids' idempotency keys
    and the outbox events in one round trip (the hot path of a flash sale: the rows stay
    locked for as short as possible). The caller holds the levels locked and computed their
    new values, so it knows them exactly (the version guard only catches a bug). A
    reservation whose key another transaction claimed (a retry, concurrent or earlier) is
    not inserted; the caller sees fewer rows inserted than given and rolls back."""
    return f"""
WITH keys AS ({claim}), ins AS (
  INSERT INTO reservations (id, owner, customer_id, state, expires_at, created_at,
                            updated_at, actor)
  SELECT r.id, r.owner, r.customer_id, r.state, r.expires_at, r.created_at, r.updated_at,
         r.actor
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[],
              $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[])
       AS r(id, owner, customer_id, state, expires_at, created_at, updated_at, actor, key)
  WHERE r.key IS NULL OR r.key IN (SELECT request_id FROM keys)
  RETURNING id
), lines AS (
  INSERT INTO reservation_lines (reservation_id, line_no, sku, location_id, quantity)
  SELECT l.reservation_id, l.line_no, l.sku, l.location_id, l.quantity
  FROM unnest($10::uuid[], $11::smallint[], $12::text[], $13::text[], $14::bigint[])
       AS l(reservation_id, line_no, sku, location_id, quantity)
  WHERE l.reservation_id IN (SELECT id FROM ins)
), levels AS (
  UPDATE stock_levels s SET reserved = v.reserved, version = v.version,
                            updated_at = v.updated_at
  FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[], $19::timestamptz[])
       AS v(sku, loc, reserved, version, updated_at)
  WHERE s.sku = v.sku AND s.location_id = v.loc AND s.version = v.version - 1
  RETURNING 1
), events AS ({outbox})
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM levels) AS updated
"""  # noqa: S608 (the kit's constant fragments are interpolated, no input)


#: Locks levels in (sku, location) order, the one order every writer uses, so concurrent
#: multi-line writers never deadlock. One array pair keeps one prepared plan.
LOCK_LEVELS = """
SELECT s.* FROM stock_levels s
JOIN unnest($1::text[], $2::text[]) AS k(sku, loc) ON s.sku = k.sku AND s.location_id = k.loc
ORDER BY s.sku, s.location_id FOR UPDATE OF s
"""


#: Serializes the reservations of each customer across transactions and replicas, so
#: counting its active holds and adding one cannot interleave (the active-holds cap). Taken
#: in one order (by key), before any level lock, and only by ReserveStock: no cycles.
LOCK_CUSTOMERS = """
SELECT count(pg_advisory_xact_lock(k)) FROM (
  SELECT DISTINCT hashtextextended('tenpo.inventory.holds:' || c, 0) AS k
  FROM unnest($1::text[]) AS c ORDER BY k
) AS keys
"""

#: Run after LOCK_CUSTOMERS, as its own statement: its snapshot then sees every hold that
#: committed before we got the locks.
COUNT_ACTIVE_HOLDS = """
SELECT customer_id, count(*) AS active FROM reservations
WHERE state = 1 AND expires_at > $2 AND customer_id = ANY($1::text[])
GROUP BY customer_id
"""


def _key_arrays(keys: Iterable[d.Key]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered]


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
    }


def _level(row: Any) -> d.StockLevel:
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


class StockStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, keys: Iterable[d.Key]) -> dict[d.Key, d.StockLevel]:
        """Lock the existing levels of ``keys`` (see ``LOCK_LEVELS``)."""
        skus, locs = _key_arrays(keys)
        if not skus:
            return {}
        connection = await self.session.connection()
        rows = (await connection.exec_driver_sql(LOCK_LEVELS, (skus, locs))).mappings()
        return {(r["sku"], r["location_id"]): _level(r) for r in rows}

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
        written = {(r["sku"], r["location_id"]): _level(r) for r in rows}
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
        return _level(row) if row else d.StockLevel(sku, location_id)

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
        return [_level(r) for r in rows]

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
        return [_level(r) for r in rows]

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


def _reservation(row: RowMapping, lines: Sequence[d.Line]) -> d.Reservation:
    return d.Reservation(
        id=row["id"],
        owner=row["owner"],
        lines=tuple(lines),
        state=d.ReservationState(row["state"]),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        customer_id=row["customer_id"],
    )


class ReservationWriter:
    """The reservation hot path (a flash sale's every request passes here) on a driver-level
    unit of work: plain asyncpg statements, none of SQLAlchemy's per-statement cost."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def lock(self, keys: Iterable[d.Key]) -> dict[d.Key, d.StockLevel]:
        """Lock the existing levels of ``keys`` (see ``LOCK_LEVELS``)."""
        skus, locs = _key_arrays(keys)
        if not skus:
            return {}
        rows = await self.connection.fetch(LOCK_LEVELS, skus, locs)
        return {(r["sku"], r["location_id"]): _level(r) for r in rows}

    async def lock_customers_and_count_holds(
        self, customer_ids: Iterable[str], now: datetime
    ) -> dict[str, int]:
        """Lock the customers (see ``LOCK_CUSTOMERS``) and count their unexpired active
        reservations; held until the transaction ends."""
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        await self.connection.fetchval(LOCK_CUSTOMERS, wanted)
        rows = await self.connection.fetch(COUNT_ACTIVE_HOLDS, wanted, now)
        return {r["customer_id"]: r["active"] for r in rows}

    async def answers(self, keys: Sequence[str]) -> dict[str, StoredAnswer]:
        """What earlier ReserveStock calls with these idempotency keys answered."""
        return await stored_answers(self.connection, RESERVE_SCOPE, keys)

    async def record(
        self,
        reservation_rows: Sequence[dict[str, Any]],
        line_rows: Sequence[dict[str, Any]],
        levels: Sequence[d.StockLevel],
        claims: Sequence[KeyClaim],
        events: Sequence[list[Any]],
    ) -> bool:
        """Write reservations with their lines, the new values of levels the caller holds
        locked, the idempotency keys of ``claims`` and ``events`` (``outbox_arrays``), in one
        statement. False when a key was claimed by another call meanwhile: then the caller
        must roll back. A row's ``key`` is its claim's key (None without a request_id)."""
        if not reservation_rows:
            return True
        args: list[Any] = [
            [r["id"] for r in reservation_rows],
            [r["owner"] for r in reservation_rows],
            [r["customer_id"] for r in reservation_rows],
            [r["state"] for r in reservation_rows],
            [r["expires_at"] for r in reservation_rows],
            [r["created_at"] for r in reservation_rows],
            [r["updated_at"] for r in reservation_rows],
            [r["actor"] for r in reservation_rows],
            [r["key"] for r in reservation_rows],
            [r["reservation_id"] for r in line_rows],
            [r["line_no"] for r in line_rows],
            [r["sku"] for r in line_rows],
            [r["location_id"] for r in line_rows],
            [r["quantity"] for r in line_rows],
            [lv.sku for lv in levels],
            [lv.location_id for lv in levels],
            [lv.reserved for lv in levels],
            [lv.version for lv in levels],
            [lv.updated_at for lv in levels],
        ]
        assert len(args) == _RESERVATION_PARAMETERS
        claim_sql, claim_args = claim_keys(RESERVE_SCOPE, claims, after=len(args))
        args += claim_args
        outbox_sql, outbox_args = outbox_fragment(events, after=len(args))
        args += outbox_args
        row = await self.connection.fetchrow(_record_reservations(claim_sql, outbox_sql), *args)
        if row["inserted"] != len(reservation_rows):
            return False
        if row["updated"] != len({lv.key for lv in levels}):
            raise RuntimeError("a stock level to write was not locked or has changed")
        return True


class ReservationStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_many(
        self, ids: Sequence[uuid.UUID], *, for_update: bool = False, skip_locked: bool = False
    ) -> list[d.Reservation]:
        if not ids:
            return []
        query = (
            sa.select(reservations).where(reservations.c.id.in_(ids)).order_by(reservations.c.id)
        )
        if for_update:
            query = query.with_for_update(skip_locked=skip_locked)
        rows = list((await self.session.execute(query)).mappings())
        return await self._hydrate(rows)

    async def get(
        self, reservation_id: uuid.UUID, *, for_update: bool = False
    ) -> d.Reservation | None:
        found = await self.get_many([reservation_id], for_update=for_update)
        return found[0] if found else None

    async def _hydrate(self, rows: Sequence[RowMapping]) -> list[d.Reservation]:
        if not rows:
            return []
        line_rows = await self.session.execute(
            sa.select(reservation_lines)
            .where(reservation_lines.c.reservation_id.in_([r["id"] for r in rows]))
            .order_by(reservation_lines.c.reservation_id, reservation_lines.c.line_no)
        )
        lines: dict[uuid.UUID, list[d.Line]] = {}
        for line in line_rows.mappings():
            lines.setdefault(line["reservation_id"], []).append(
                d.Line(line["sku"], line["quantity"], line["location_id"])
            )
        return [_reservation(r, lines.get(r["id"], [])) for r in rows]

    async def set_state(
        self,
        ids: Sequence[uuid.UUID],
        state: d.ReservationState,
        *,
        expires_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": int(state), "updated_at": sa.func.now()}
        if expires_at is not None:
            values["expires_at"] = expires_at
        await self.session.execute(
            sa.update(reservations).where(reservations.c.id.in_(ids)).values(**values)
        )

    async def due(self, now: datetime, limit: int) -> list[d.Reservation]:
        """Active reservations past expiry, locked; rows another sweeper holds are skipped."""
        rows = list(
            (
                await self.session.execute(
                    sa.select(reservations)
                    .where(
                        reservations.c.state == int(d.ReservationState.ACTIVE),
                        reservations.c.expires_at <= now,
                    )
                    .order_by(reservations.c.expires_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).mappings()
        )
        return await self._hydrate(rows)

    async def active_reserved(self, keys: Sequence[d.Key]) -> dict[d.Key, int]:
        rows = await self.session.execute(
            sa.select(
                reservation_lines.c.sku,
                reservation_lines.c.location_id,
                sa.func.sum(reservation_lines.c.quantity),
            )
            .join(reservations, reservations.c.id == reservation_lines.c.reservation_id)
            .where(
                reservations.c.state == int(d.ReservationState.ACTIVE),
                sa.tuple_(reservation_lines.c.sku, reservation_lines.c.location_id).in_(keys),
            )
            .group_by(reservation_lines.c.sku, reservation_lines.c.location_id)
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}


def _transfer(row: RowMapping) -> d.Transfer:
    return d.Transfer(
        id=row["id"],
        sku=row["sku"],
        from_location_id=row["from_location_id"],
        to_location_id=row["to_location_id"],
        quantity=row["quantity"],
        state=d.TransferState(row["state"]),
        created_at=row["created_at"],
        received_at=row["received_at"],
    )


class TransferStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, transfer: d.Transfer) -> d.Transfer:
        values = {
            "id": transfer.id,
            "sku": transfer.sku,
            "from_location_id": transfer.from_location_id,
            "to_location_id": transfer.to_location_id,
            "quantity": transfer.quantity,
            "state": int(transfer.state),
        }
        row = (
            (await self.session.execute(sa.insert(transfers).values(values).returning(transfers)))
            .mappings()
            .one()
        )
        return _transfer(row)

    async def get(self, transfer_id: uuid.UUID, *, for_update: bool = False) -> d.Transfer | None:
        query = sa.select(transfers).where(transfers.c.id == transfer_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _transfer(row) if row else None

    async def mark_received(self, transfer_id: uuid.UUID) -> d.Transfer:
        row = (
            (
                await self.session.execute(
                    sa.update(transfers)
                    .where(transfers.c.id == transfer_id)
                    .values(state=int(d.TransferState.RECEIVED), received_at=sa.func.now())
                    .returning(transfers)
                )
            )
            .mappings()
            .one()
        )
        return _transfer(row)
