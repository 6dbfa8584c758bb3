"""Loyalty persistence: accounts, the append-only ledger, reservations.

Lock order, everywhere: the account row first, then its entries and reservations. Every
change of an account starts by locking its row (``lock``, or the single-statement
``reserve``), so changes of one account never interleave and the expiry sweep (which picks
accounts with SKIP LOCKED) cannot deadlock with a checkout.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.domain import loyalty as ld
from services.customer.models import (
    loyalty_accounts,
    loyalty_earnings,
    loyalty_entries,
    loyalty_reservations,
)

_A, _E, _R = loyalty_accounts.c, loyalty_entries.c, loyalty_reservations.c


def account_from_row(row: Any) -> ld.Account:
    return ld.Account(
        row.customer_id,
        row.balance,
        row.reserved,
        row.tier,
        row.version,
        row.updated_at,
        pending=row.pending,
        tier_keep_until=row.tier_keep_until,
        twelve_month_spend=row.twelve_month_spend,
    )


def _entry(row: Any) -> ld.Entry:
    return ld.Entry(
        id=row.id,
        customer_id=row.customer_id,
        kind=ld.LedgerEntryKind(row.kind),
        points=row.points,
        channel=row.channel,
        store_id=row.store_id,
        request_id=row.request_id,
        reference=row.reference,
        created_at=row.created_at,
        expires_at=row.expires_at,
        reverses=row.reverses,
        remaining=row.remaining,
    )


def _reservation(row: Any) -> ld.Reservation:
    return ld.Reservation(
        id=row.id,
        customer_id=row.customer_id,
        points=row.points,
        state=ld.ReservationState(row.state),
        reference=row.reference,
        channel=row.channel,
        store_id=row.store_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        entry_id=row.entry_id,
    )


class LoyaltyStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -------------------------------------------------------------------------- accounts

    async def get(self, customer_id: uuid.UUID) -> ld.Account | None:
        row = (
            await self.session.execute(
                sa.select(loyalty_accounts).where(_A.customer_id == customer_id)
            )
        ).first()
        return account_from_row(row) if row else None

    async def tier_review_at(self, customer_id: uuid.UUID) -> datetime | None:
        return (
            await self.session.execute(
                sa.select(_A.tier_review_at).where(_A.customer_id == customer_id)
            )
        ).scalar_one_or_none()

    async def lock(self, customer_id: uuid.UUID) -> ld.Account:
        """The account, created empty on first use, locked until the transaction ends."""
        await self.session.execute(
            pg.insert(loyalty_accounts)
            .values(customer_id=customer_id)
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )
        row = (
            await self.session.execute(
                sa.select(loyalty_accounts).where(_A.customer_id == customer_id).with_for_update()
            )
        ).one()
        return account_from_row(row)

    async def reserve(
        self, customer_id: uuid.UUID, points: int, now: datetime
    ) -> ld.Account | None:
        """Hold ``points`` if that many are available, in one statement: the row lock of the
        UPDATE and its condition make concurrent holds queue and re-check, so together they
        never exceed the balance. None if not enough are available."""
        row = (
            await self.session.execute(
                sa.update(loyalty_accounts)
                .where(_A.customer_id == customer_id, _A.balance - _A.reserved >= points)
                .values(reserved=_A.reserved + points, version=_A.version + 1, updated_at=now)
                .returning(*loyalty_accounts.c)
            )
        ).first()
        return account_from_row(row) if row else None

    async def change_reserved(
        self, customer_id: uuid.UUID, delta: int, now: datetime
    ) -> ld.Account:
        row = (
            await self.session.execute(
                sa.update(loyalty_accounts)
                .where(_A.customer_id == customer_id)
                .values(reserved=_A.reserved + delta, version=_A.version + 1, updated_at=now)
                .returning(*loyalty_accounts.c)
            )
        ).one()
        return account_from_row(row)

    # ---------------------------------------------------------------------------- ledger

    async def append(
        self, entry: ld.Entry, *, remaining: int = 0, reserved_delta: int = 0
    ) -> ld.Account:
        """Insert ``entry`` and add its points to the balance in one statement (a CTE), so
        no code path can write one without the other; the database's deferred check holds
        the balance to the ledger's sum at commit as well. Returns the account after."""
        inserted = (
            pg.insert(loyalty_entries)
            .values(
                id=entry.id,
                customer_id=entry.customer_id,
                kind=int(entry.kind),
                points=entry.points,
                remaining=remaining,
                channel=entry.channel,
                store_id=entry.store_id,
                request_id=entry.request_id,
                reference=entry.reference,
                reverses=entry.reverses,
                expires_at=entry.expires_at,
                created_at=entry.created_at,
            )
            .returning(_E.customer_id, _E.points)
            .cte("inserted")
        )
        statement = (
            sa.update(loyalty_accounts)
            .where(_A.customer_id == inserted.c.customer_id)
            .values(
                balance=_A.balance + inserted.c.points,
                reserved=_A.reserved + reserved_delta,
                version=_A.version + 1,
                updated_at=entry.created_at,
            )
            .returning(*loyalty_accounts.c)
            .add_cte(inserted)
        )
        return account_from_row((await self.session.execute(statement)).one())

    async def entry(self, customer_id: uuid.UUID, entry_id: uuid.UUID) -> ld.Entry | None:
        row = (
            await self.session.execute(
                sa.select(loyalty_entries).where(_E.customer_id == customer_id, _E.id == entry_id)
            )
        ).first()
        return _entry(row) if row else None

    async def reversal_of(self, entry_id: uuid.UUID) -> ld.Entry | None:
        row = (
            await self.session.execute(sa.select(loyalty_entries).where(_E.reverses == entry_id))
        ).first()
        return _entry(row) if row else None

    async def page(
        self, customer_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[tuple[int, ld.Entry]]:
        query = sa.select(loyalty_entries).where(_E.customer_id == customer_id)
        if before_seq is not None:
            query = query.where(_E.seq < before_seq)
        rows = await self.session.execute(query.order_by(_E.seq.desc()).limit(limit))
        return [(row.seq, _entry(row)) for row in rows]

    async def open_lots(self, customer_id: uuid.UUID) -> list[ld.Lot]:
        """Positive entries with points left, oldest expiry first (spent first)."""
        rows = await self.session.execute(
            sa.select(_E.id, _E.remaining)
            .where(_E.customer_id == customer_id, _E.remaining > 0)
            .order_by(_E.expires_at.asc().nulls_last(), _E.seq)
        )
        return [ld.Lot(row.id, row.remaining) for row in rows]

    async def expired_lots(self, customer_id: uuid.UUID, now: datetime) -> list[ld.Lot]:
        rows = await self.session.execute(
            sa.select(_E.id, _E.remaining)
            .where(_E.customer_id == customer_id, _E.remaining > 0, _E.expires_at <= now)
            .order_by(_E.expires_at, _E.seq)
        )
        return [ld.Lot(row.id, row.remaining) for row in rows]

    async def take_from_lots(self, taken: Sequence[tuple[uuid.UUID, int]]) -> None:
        for entry_id, points in taken:
            await self.session.execute(
                sa.update(loyalty_entries)
                .where(_E.id == entry_id)
                .values(remaining=_E.remaining - points)
            )

    async def accounts_to_sweep(
        self, now: datetime, limit: int, after: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Accounts with an expired lot or hold, an order earning past its return window, or
        a tier due for review, locked: SKIP LOCKED is the sweep's lease, so replicas sweep
        different accounts, a checkout holding one is never waited for, and what a crashed
        sweep left is found again by the next (the state is in the rows, not in memory)."""
        expired_lot = sa.exists().where(
            _E.customer_id == _A.customer_id, _E.remaining > 0, _E.expires_at <= now
        )
        expired_hold = sa.exists().where(
            _R.customer_id == _A.customer_id,
            _R.state == int(ld.ReservationState.HELD),
            _R.expires_at <= now,
        )
        due_earning = sa.exists().where(
            loyalty_earnings.c.customer_id == _A.customer_id,
            loyalty_earnings.c.state == 1,  # EarningState.PENDING
            loyalty_earnings.c.available_at <= now,
        )
        tier_review = sa.and_(_A.tier_review_at.is_not(None), _A.tier_review_at <= now)
        query = sa.select(_A.customer_id).where(
            sa.or_(expired_lot, expired_hold, due_earning, tier_review)
        )
        if after is not None:
            query = query.where(_A.customer_id > after)
        rows = await self.session.execute(
            query.order_by(_A.customer_id).limit(limit).with_for_update(skip_locked=True)
        )
        return [row.customer_id for row in rows]

    async def blank_adjust_reasons(self, customer_id: uuid.UUID) -> None:
        """Erasure: staff-typed reasons are the one free text of the ledger."""
        await self.session.execute(
            sa.update(loyalty_entries)
            .where(_E.customer_id == customer_id, _E.kind == int(ld.LedgerEntryKind.ADJUST))
            .values(reference="")
        )

    # ---------------------------------------------------------------------- reservations

    async def insert_reservation(self, reservation: ld.Reservation) -> None:
        await self.session.execute(
            sa.insert(loyalty_reservations).values(
                id=reservation.id,
                customer_id=reservation.customer_id,
                points=reservation.points,
                state=int(reservation.state),
                reference=reservation.reference,
                channel=reservation.channel,
                store_id=reservation.store_id,
                created_at=reservation.created_at,
                expires_at=reservation.expires_at,
            )
        )

    async def reservation(
        self, customer_id: uuid.UUID, reservation_id: uuid.UUID
    ) -> ld.Reservation | None:
        row = (
            await self.session.execute(
                sa.select(loyalty_reservations).where(
                    _R.customer_id == customer_id, _R.id == reservation_id
                )
            )
        ).first()
        return _reservation(row) if row else None

    async def expired_holds(self, customer_id: uuid.UUID, now: datetime) -> list[ld.Reservation]:
        rows = await self.session.execute(
            sa.select(loyalty_reservations).where(
                _R.customer_id == customer_id,
                _R.state == int(ld.ReservationState.HELD),
                _R.expires_at <= now,
            )
        )
        return [_reservation(row) for row in rows]

    async def set_reservation_state(
        self,
        reservation_id: uuid.UUID,
        state: ld.ReservationState,
        entry_id: uuid.UUID | None = None,
    ) -> None:
        await self.session.execute(
            sa.update(loyalty_reservations)
            .where(_R.id == reservation_id)
            .values(state=int(state), entry_id=entry_id)
        )
