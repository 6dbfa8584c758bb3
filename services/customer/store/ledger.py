"""Persistence of an append-only ledger with holds (loyalty points, the store card): the
account row, its entries, its holds, over the tables a ``LedgerTables`` names.

Lock order, everywhere: the customer row, then the account row (``lock``, or one of the
single-statement conditional updates), then its entries and holds. So changes of one
account never interleave, and the sweeps (which pick accounts with SKIP LOCKED) never wait
for a checkout nor deadlock with one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import IntEnum
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.domain import ledger

AccountT = TypeVar("AccountT")
EntryT = TypeVar("EntryT")
T = TypeVar("T")


def from_row(cls: type[T], row: Any, **convert: Callable[[Any], Any]) -> T:
    """A domain dataclass from a row whose columns carry its fields' names."""
    return cls(
        **{
            f.name: convert[f.name](value) if f.name in convert else value
            for f in fields(cls)  # type: ignore[arg-type]
            for value in (getattr(row, f.name),)
        }
    )


def values_of(entry: Any) -> dict[str, Any]:
    """A domain entry's fields as column values (enums by number)."""
    return {
        f.name: int(value) if isinstance(value, IntEnum) else value
        for f in fields(entry)
        for value in (getattr(entry, f.name),)
    }


@dataclass(frozen=True)
class LedgerTables:
    """One ledger's tables; ``amount`` names the column its entries and holds count in."""

    accounts: sa.Table
    entries: sa.Table
    holds: sa.Table
    amount: str


@dataclass(frozen=True)
class LedgerTypes(Generic[AccountT, EntryT]):
    """The domain types one ledger's rows become (their fields named as the columns)."""

    account: type[AccountT]
    entry: type[EntryT]
    entry_kind: type[IntEnum]
    hold_state: type[IntEnum]

    def account_of(self, row: Any) -> AccountT:
        return from_row(self.account, row)

    def entry_of(self, row: Any) -> EntryT:
        return from_row(self.entry, row, kind=self.entry_kind)


class LedgerStore(Generic[AccountT, EntryT]):
    """Set by each ledger's store: its tables and domain types."""

    tables: LedgerTables
    types: LedgerTypes[AccountT, EntryT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._a, self._e, self._h = (
            self.tables.accounts.c,
            self.tables.entries.c,
            self.tables.holds.c,
        )

    # -------------------------------------------------------------------------- accounts

    async def get(self, customer_id: uuid.UUID) -> AccountT | None:
        row = (
            await self.session.execute(
                sa.select(self.tables.accounts).where(self._a.customer_id == customer_id)
            )
        ).first()
        return self.types.account_of(row) if row else None

    async def ensure(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            pg.insert(self.tables.accounts)
            .values(customer_id=customer_id)
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )

    async def lock(self, customer_id: uuid.UUID) -> AccountT:
        """The account, created empty on first use, locked until the transaction ends."""
        await self.ensure(customer_id)
        row = (
            await self.session.execute(
                sa.select(self.tables.accounts)
                .where(self._a.customer_id == customer_id)
                .with_for_update()
            )
        ).one()
        return self.types.account_of(row)

    async def hold(self, customer_id: uuid.UUID, amount: int, now: datetime) -> AccountT | None:
        """Set ``amount`` aside if that much is available, in one statement: the row lock of
        the UPDATE and its condition make concurrent holds queue and re-check, so together
        they never exceed the balance. None if not enough is available."""
        return await self._update_reserved(
            customer_id, amount, now, self._a.balance - self._a.reserved >= amount
        )

    async def change_reserved(self, customer_id: uuid.UUID, delta: int, now: datetime) -> AccountT:
        account = await self._update_reserved(customer_id, delta, now, sa.true())
        assert account is not None
        return account

    async def _update_reserved(
        self, customer_id: uuid.UUID, delta: int, now: datetime, condition: sa.ColumnElement[bool]
    ) -> AccountT | None:
        row = (
            await self.session.execute(
                sa.update(self.tables.accounts)
                .where(self._a.customer_id == customer_id, condition)
                .values(
                    reserved=self._a.reserved + delta, version=self._a.version + 1, updated_at=now
                )
                .returning(*self.tables.accounts.c)
            )
        ).first()
        return self.types.account_of(row) if row else None

    # ---------------------------------------------------------------------------- ledger

    async def append(
        self,
        entry: Mapping[str, Any],
        *,
        condition: sa.ColumnElement[bool] | None = None,
        reserved_delta: int = 0,
    ) -> AccountT | None:
        """Insert the entry (its column values) and add its amount to the balance in one
        statement, if ``condition`` holds for the account row; None (nothing written) if
        not. The account is updated first and the entry inserted from its returned row, so
        the two are written together or not at all; the database's deferred check holds
        the balance to the ledger's sum at commit as well."""
        accounts, entries = self.tables.accounts, self.tables.entries
        amount = entry[self.tables.amount]
        updated = (
            sa.update(accounts)
            .where(
                self._a.customer_id == entry["customer_id"],
                sa.true() if condition is None else condition,
            )
            .values(
                balance=self._a.balance + amount,
                reserved=self._a.reserved + reserved_delta,
                version=self._a.version + 1,
                updated_at=entry["created_at"],
            )
            .returning(*accounts.c)
            .cte("updated")
        )
        names = [name for name in entry if name != "customer_id"]
        inserted = (
            pg.insert(entries)
            .from_select(
                ["customer_id", *names],
                sa.select(
                    updated.c.customer_id,
                    *(sa.literal(entry[name], entries.c[name].type) for name in names),
                ),
            )
            .returning(self._e.id)
            .cte("inserted")
        )
        # PostgreSQL runs a data-modifying CTE whether or not the query reads it.
        row = (await self.session.execute(sa.select(updated).add_cte(inserted))).first()
        return self.types.account_of(row) if row else None

    async def entry(self, customer_id: uuid.UUID, entry_id: uuid.UUID) -> EntryT | None:
        row = (
            await self.session.execute(
                sa.select(self.tables.entries).where(
                    self._e.customer_id == customer_id, self._e.id == entry_id
                )
            )
        ).first()
        return self.types.entry_of(row) if row else None

    async def page(
        self, customer_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[tuple[int, EntryT]]:
        """Newest first, by the ledger's sequence."""
        query = sa.select(self.tables.entries).where(self._e.customer_id == customer_id)
        if before_seq is not None:
            query = query.where(self._e.seq < before_seq)
        rows = await self.session.execute(query.order_by(self._e.seq.desc()).limit(limit))
        return [(row.seq, self.types.entry_of(row)) for row in rows]

    # ----------------------------------------------------------------------------- holds

    def _hold(self, row: Any) -> ledger.Hold:
        return ledger.Hold(
            id=row.id,
            customer_id=row.customer_id,
            amount=getattr(row, self.tables.amount),
            state=self.types.hold_state(row.state),
            reference=row.reference,
            channel=row.channel,
            store_id=row.store_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            entry_id=row.entry_id,
        )

    async def insert_hold(self, hold: ledger.Hold) -> None:
        await self.session.execute(
            sa.insert(self.tables.holds).values(
                {
                    "id": hold.id,
                    "customer_id": hold.customer_id,
                    self.tables.amount: hold.amount,
                    "state": int(hold.state),
                    "reference": hold.reference,
                    "channel": hold.channel,
                    "store_id": hold.store_id,
                    "created_at": hold.created_at,
                    "expires_at": hold.expires_at,
                }
            )
        )

    async def get_hold(self, customer_id: uuid.UUID, hold_id: uuid.UUID) -> ledger.Hold | None:
        row = (
            await self.session.execute(
                sa.select(self.tables.holds).where(
                    self._h.customer_id == customer_id, self._h.id == hold_id
                )
            )
        ).first()
        return self._hold(row) if row else None

    async def set_hold_state(
        self, hold_id: uuid.UUID, state: int, entry_id: uuid.UUID | None = None
    ) -> None:
        await self.session.execute(
            sa.update(self.tables.holds)
            .where(self._h.id == hold_id)
            .values(state=int(state), entry_id=entry_id)
        )

    def expired_hold_exists(self, now: datetime) -> sa.Exists:
        """For the sweeps' account queries: the account has a hold past its expiry."""
        return sa.exists().where(
            self._h.customer_id == self._a.customer_id,
            self._h.state == ledger.HELD,
            self._h.expires_at <= now,
        )

    async def expired_holds(self, customer_id: uuid.UUID, now: datetime) -> list[ledger.Hold]:
        rows = await self.session.execute(
            sa.select(self.tables.holds).where(
                self._h.customer_id == customer_id,
                self._h.state == ledger.HELD,
                self._h.expires_at <= now,
            )
        )
        return [self._hold(row) for row in rows]

    async def accounts_to_sweep(
        self,
        now: datetime,
        limit: int,
        after: uuid.UUID | None = None,
        *more: sa.ColumnElement[bool],
    ) -> list[uuid.UUID]:
        """Accounts with an expired hold (or any of ``more``), locked: SKIP LOCKED is the
        sweep's lease, so replicas sweep different accounts, a checkout holding one is never
        waited for, and what a crashed sweep left is found again by the next (the state is
        in the rows, not in memory)."""
        query = sa.select(self._a.customer_id).where(sa.or_(self.expired_hold_exists(now), *more))
        if after is not None:
            query = query.where(self._a.customer_id > after)
        rows = await self.session.execute(
            query.order_by(self._a.customer_id).limit(limit).with_for_update(skip_locked=True)
        )
        return [row.customer_id for row in rows]
