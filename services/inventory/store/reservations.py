"""Inventory persistence: reservations, with the raw asyncpg hot path that records a
batch of them in one statement."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import domain as d
from services.inventory.domain.sourcing import CapacityUse
from services.inventory.models import reservation_lines, reservations
from services.inventory.store.capacity import (
    LocationLimits,
    UsageKey,
    location_limits,
    lock_usage,
)
from services.inventory.store.stock import LOCK_LEVELS, key_arrays, level_of_row
from tenpo.kit.db import outbox_fragment
from tenpo.kit.idempotency import KeyClaim, StoredAnswer, claim_keys, stored_answers

#: The kit idempotency scope of ReserveStock.
RESERVE_SCOPE = "ReserveStock"

#: The hot statement's own parameters ($1..$27); the kit numbers its fragments after them.
_RESERVATION_PARAMETERS = 27


@functools.lru_cache(maxsize=4)
def _record_reservations(claim: str, outbox: str) -> str:
    """Reservations, their lines, the levels' new values, the request_ids' idempotency keys
    and the outbox events in one round trip (the hot path of a flash sale: the rows stay
    locked for as short as possible). The caller holds the levels locked and computed their
    new values, so it knows them exactly (the version guard only catches a bug). A
    reservation whose key another transaction claimed (a retry, concurrent or earlier) is
    not inserted; the caller sees fewer rows inserted than given and rolls back. The daily
    capacity rows the batch used (locked by the caller too) get their new values."""
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
  INSERT INTO reservation_lines (reservation_id, line_no, sku, location_id, quantity, method,
                                 capacity_kind, capacity_day)
  SELECT l.reservation_id, l.line_no, l.sku, l.location_id, l.quantity, l.method,
         l.capacity_kind, l.capacity_day
  FROM unnest($10::uuid[], $11::smallint[], $12::text[], $13::text[], $14::bigint[],
              $15::smallint[], $16::smallint[], $17::date[])
       AS l(reservation_id, line_no, sku, location_id, quantity, method, capacity_kind,
            capacity_day)
  WHERE l.reservation_id IN (SELECT id FROM ins)
), levels AS (
  UPDATE stock_levels s SET reserved = v.reserved, version = v.version,
                            updated_at = v.updated_at
  FROM unnest($18::text[], $19::text[], $20::bigint[], $21::bigint[], $22::timestamptz[])
       AS v(sku, loc, reserved, version, updated_at)
  WHERE s.sku = v.sku AND s.location_id = v.loc AND s.version = v.version - 1
  RETURNING 1
), usage AS (
  UPDATE capacity_usage c SET units = u.units, orders = u.orders
  FROM unnest($23::text[], $24::date[], $25::smallint[], $26::bigint[], $27::bigint[])
       AS u(location_id, day, kind, units, orders)
  WHERE c.location_id = u.location_id AND c.day = u.day AND c.kind = u.kind
  RETURNING 1
), events AS ({outbox})
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM levels) AS updated,
       (SELECT count(*) FROM usage) AS used
"""  # noqa: S608 (the kit's constant fragments are interpolated, no input)


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
        skus, locs = key_arrays(keys)
        if not skus:
            return {}
        rows = await self.connection.fetch(LOCK_LEVELS, skus, locs)
        return {(r["sku"], r["location_id"]): level_of_row(r) for r in rows}

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
        usage: Mapping[UsageKey, CapacityUse] | None = None,
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
            [r["method"] for r in line_rows],
            [r["capacity_kind"] for r in line_rows],
            [r["capacity_day"] for r in line_rows],
            [lv.sku for lv in levels],
            [lv.location_id for lv in levels],
            [lv.reserved for lv in levels],
            [lv.version for lv in levels],
            [lv.updated_at for lv in levels],
        ]
        used = sorted((usage or {}).items())
        args += [
            [k[0] for k, _ in used],
            [k[1] for k, _ in used],
            [int(k[2]) for k, _ in used],
            [u.units for _, u in used],
            [u.orders for _, u in used],
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
        if row["used"] != len(used):
            raise RuntimeError("a capacity row to write was not locked")
        return True

    async def location_limits(self, ids: Iterable[str]) -> dict[str, LocationLimits]:
        """The committed capacity settings of these locations."""
        return await location_limits(self.connection, ids)

    async def lock_usage(self, keys: Iterable[UsageKey]) -> dict[UsageKey, CapacityUse]:
        """Lock (creating them) the daily capacity rows of ``keys``; after the levels."""
        return await lock_usage(self.connection, keys)


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
                d.Line(
                    line["sku"],
                    line["quantity"],
                    line["location_id"],
                    d.AllocationMethod(line["method"]) if line["method"] else None,
                )
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
