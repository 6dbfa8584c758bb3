"""Loyalty persistence: accounts, the append-only points ledger, reservations (the generic
ledger store of ``store/ledger.py`` over the loyalty tables), and what only points have:
lots spent oldest first and expiring, reversals, the sweep's account query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.customer.domain import loyalty as ld
from services.customer.models import (
    loyalty_accounts,
    loyalty_earnings,
    loyalty_entries,
    loyalty_reservations,
)
from services.customer.store.ledger import LedgerStore, LedgerTables, LedgerTypes, values_of

_A, _E = loyalty_accounts.c, loyalty_entries.c


def account_from_row(row: Any) -> ld.Account:
    return LoyaltyStore.types.account_of(row)


class LoyaltyStore(LedgerStore[ld.Account, ld.Entry]):
    tables = LedgerTables(loyalty_accounts, loyalty_entries, loyalty_reservations, "points")
    types = LedgerTypes(ld.Account, ld.Entry, ld.LedgerEntryKind, ld.ReservationState)

    async def tier_review_at(self, customer_id: uuid.UUID) -> datetime | None:
        return (
            await self.session.execute(
                sa.select(_A.tier_review_at).where(_A.customer_id == customer_id)
            )
        ).scalar_one_or_none()

    async def append_entry(
        self, entry: ld.Entry, *, remaining: int = 0, reserved_delta: int = 0
    ) -> ld.Account:
        """Append ``entry`` (its points added to the balance in the same statement)."""
        account = await self.append(
            {**values_of(entry), "remaining": remaining},
            reserved_delta=reserved_delta,
        )
        assert account is not None  # unconditional: the account row exists (locked)
        return account

    async def reversal_of(self, entry_id: uuid.UUID) -> ld.Entry | None:
        row = (
            await self.session.execute(sa.select(loyalty_entries).where(_E.reverses == entry_id))
        ).first()
        return self.types.entry_of(row) if row else None

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

    async def accounts_due(
        self, now: datetime, limit: int, after: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Accounts with an expired hold or lot, an order earning past its return window, or
        a tier due for review, locked (SKIP LOCKED, see ``accounts_to_sweep``)."""
        expired_lot = sa.exists().where(
            _E.customer_id == _A.customer_id, _E.remaining > 0, _E.expires_at <= now
        )
        due_earning = sa.exists().where(
            loyalty_earnings.c.customer_id == _A.customer_id,
            loyalty_earnings.c.state == 1,  # EarningState.PENDING
            loyalty_earnings.c.available_at <= now,
        )
        tier_review = sa.and_(_A.tier_review_at.is_not(None), _A.tier_review_at <= now)
        return await self.accounts_to_sweep(
            now, limit, after, expired_lot, due_earning, tier_review
        )

    async def blank_adjust_reasons(self, customer_id: uuid.UUID) -> None:
        """Erasure: staff-typed reasons are the one free text of the ledger."""
        await self.session.execute(
            sa.update(loyalty_entries)
            .where(_E.customer_id == customer_id, _E.kind == int(ld.LedgerEntryKind.ADJUST))
            .values(reference="")
        )
