"""Customer use cases, shared by loyalty points and the store card: one append-only ledger
with holds (reserve → commit or release, expiry), each change idempotent per request_id.

Every change locks the customer row, then the account row (``store/ledger.py``'s lock
order), runs once per request_id (the kit's idempotency, bound to the caller), announces the
account's new numbers through the outbox and commits. A subclass says which store, how an
account is announced and what entry a committed hold writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer import domain as d
from services.customer.domain import ledger
from services.customer.domain import loyalty as ld
from services.customer.store.ledger import LedgerStore
from services.customer.usecases.common import UseCase, acting_for, load_customer
from tenpo.kit.auth import Principal
from tenpo.kit.db import UnitOfWork
from tenpo.kit.idempotency import idempotent


class Balance(Protocol):
    @property
    def available(self) -> int: ...


AccountT = TypeVar("AccountT", bound=Balance)
EntryT = TypeVar("EntryT")
StoreT = TypeVar("StoreT", bound=LedgerStore[Any, Any])

#: Accounts one sweep transaction handles; the sweeps loop until none is left.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class ChangeRequest:
    """What every retryable change of a ledger carries besides its amount: a reference (an
    order, a receipt), where it was made (for services acting for a POS or an order; empty:
    the caller's token), and its request_id with the request (the idempotency record)."""

    reference: str
    channel: int
    store_id: str
    request_id: str
    request: Message


def origin(principal: Principal, channel: int, store_id: str) -> ledger.Origin:
    """Where a change came from: what the request names (a service acting for a POS or an
    order), else the caller's token."""
    store = store_id.strip()
    if store and not d.STORE_ID_PATTERN.match(store):
        raise d.invalid("store_id", "a store id (lower-case letters, digits, dashes)")
    return ledger.Origin(channel or principal.channel, store or principal.store_id)


class HeldLedger(UseCase, Generic[AccountT, EntryT, StoreT]):
    """The flows of a ledger with holds. A subclass sets ``unit``, ``hold_state``,
    ``store_type``, ``empty`` and ``hold_ttl``, implements ``announce`` and
    ``write_commit``, and may add sweep work (``accounts_due``, ``sweep_account``)."""

    unit: ledger.LedgerUnit
    hold_state: type[Any]
    store_type: Callable[[AsyncSession], StoreT]
    #: The account before its first change.
    empty: Callable[[uuid.UUID], AccountT]
    hold_ttl: timedelta

    def ledger_store(self, uow: UnitOfWork) -> StoreT:
        return self.store_type(uow.session)

    def announce(self, uow: UnitOfWork, account: AccountT) -> None:
        """Write the account's new numbers to the outbox, in the change's transaction."""
        raise NotImplementedError

    async def write_commit(
        self, uow: UnitOfWork, store: StoreT, hold: ledger.Hold, now: datetime
    ) -> uuid.UUID:
        """Append the negative entry a committed hold becomes (and lower ``reserved`` by the
        hold with it); answers the entry's id."""
        raise NotImplementedError

    async def accounts_due(
        self, store: StoreT, now: datetime, after: uuid.UUID | None
    ) -> list[uuid.UUID]:
        """The next batch of accounts the sweep has work on, locked (SKIP LOCKED)."""
        return await store.accounts_to_sweep(now, SWEEP_BATCH, after)

    async def sweep_account(
        self, uow: UnitOfWork, store: StoreT, customer_id: uuid.UUID, now: datetime
    ) -> None:
        """The sweep's work on one locked account: give back every hold past its expiry."""
        for expired in await store.expired_holds(customer_id, now):
            await self.give_back(uow, store, expired)

    # ---------------------------------------------------------------------------- reads

    async def read_account(self, principal: Principal, customer_ref: str) -> AccountT:
        """The account (empty before its first change) for the customer or a reader."""
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            found = await self.ledger_store(uow).get(customer_id)
        return found or self.empty(customer_id)

    async def read_entries(
        self, principal: Principal, customer_ref: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, EntryT]]:
        """A page of the ledger, newest first."""
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            page: list[tuple[int, EntryT]] = await self.ledger_store(uow).page(
                customer_id, before_seq, limit
            )
            return page

    # ---------------------------------------------------------------------------- flows

    async def change(
        self,
        scope: str,
        customer_id: uuid.UUID,
        principal: Principal,
        request_id: str,
        request: Message,
        action: Callable[[UnitOfWork, StoreT, AccountT], Awaitable[str]],
    ) -> tuple[EntryT | None, AccountT]:
        """One ledger change: the account locked, ``action`` run once per request_id
        (answering the new entry's id, "" for none), committed; answers the entry and the
        account after it."""
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = self.ledger_store(uow)
            account = await store.lock(customer_id)

            async def run() -> str:
                return await action(uow, store, account)

            done = await self._once(uow, scope, customer_id, request_id, request, run)
            entry = await store.entry(customer_id, uuid.UUID(done)) if done else None
            after = await store.get(customer_id)
            await uow.commit()
        assert after is not None
        return entry, after

    async def hold(
        self,
        scope: str,
        principal: Principal,
        customer_id: uuid.UUID,
        *,
        amount: int,
        change: ChangeRequest,
        where: ledger.Origin | None = None,
    ) -> ledger.Hold:
        """Set ``amount`` aside if that much is available (one conditional statement).
        ``where`` overrides where the request says it was made (a device's token decides)."""
        reference = ld.check_text(change.reference, "reference", ld.MAX_REFERENCE)
        if where is None:
            where = origin(principal, change.channel, change.store_id)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = self.ledger_store(uow)
            await store.ensure(customer_id)

            async def take() -> str:
                now = self.clock()
                account = await store.hold(customer_id, amount, now)
                if account is None:
                    current = await store.get(customer_id) or self.empty(customer_id)
                    raise self.unit.insufficient(amount, current.available)
                held = ledger.Hold(
                    id=uuid.uuid4(),
                    customer_id=customer_id,
                    amount=amount,
                    state=self.hold_state(ledger.HELD),
                    reference=reference,
                    channel=where.channel,
                    store_id=where.store_id,
                    created_at=now,
                    expires_at=now + self.hold_ttl,
                )
                await store.insert_hold(held)
                self.announce(uow, account)
                return str(held.id)

            done = await self._once(
                uow, scope, customer_id, change.request_id, change.request, take
            )
            found = await store.get_hold(customer_id, uuid.UUID(done))
            await uow.commit()
        assert found is not None
        return found

    async def commit_hold(
        self, principal: Principal, customer_id: uuid.UUID, hold_id: uuid.UUID
    ) -> ledger.Hold:
        """Turn a hold into its entry. Committing a committed hold answers it again (the
        saga retries); a released or expired one cannot be committed."""

        async def commit(uow: UnitOfWork, store: StoreT, found: ledger.Hold) -> None:
            now = self.clock()
            self.unit.check_open(found, now)
            if found.held:
                entry_id = await self.write_commit(uow, store, found, now)
                await store.set_hold_state(found.id, ledger.COMMITTED, entry_id)

        return await self._on_hold(principal, customer_id, hold_id, commit)

    async def release_hold(
        self, principal: Principal, customer_id: uuid.UUID, hold_id: uuid.UUID
    ) -> ledger.Hold:
        """Give a hold back; releasing twice is a no-op."""

        async def release(uow: UnitOfWork, store: StoreT, found: ledger.Hold) -> None:
            if found.held:
                await self.give_back(uow, store, found)

        return await self._on_hold(principal, customer_id, hold_id, release)

    async def give_back(self, uow: UnitOfWork, store: StoreT, hold: ledger.Hold) -> None:
        await store.set_hold_state(hold.id, ledger.RELEASED)
        self.announce(
            uow, await store.change_reserved(hold.customer_id, -hold.amount, self.clock())
        )

    async def sweep(self) -> int:
        """The sweep's work on every account that has some, one batch of locked accounts
        per transaction, in one pass by id (an account whose work must wait is visited once
        per sweep, not again and again). Returns how many accounts were visited."""
        changed = 0
        after: uuid.UUID | None = None
        now = self.clock()
        while True:
            async with self.db.unit_of_work() as uow:
                store = self.ledger_store(uow)
                accounts = await self.accounts_due(store, now, after)
                if not accounts:
                    return changed
                for customer_id in accounts:
                    await self.sweep_account(uow, store, customer_id, now)
                await uow.commit()
            changed += len(accounts)
            after = accounts[-1]
            if len(accounts) < SWEEP_BATCH:
                return changed

    # -------------------------------------------------------------------------- helpers

    async def _on_hold(
        self,
        principal: Principal,
        customer_id: uuid.UUID,
        hold_id: uuid.UUID,
        act: Callable[[UnitOfWork, StoreT, ledger.Hold], Awaitable[None]],
    ) -> ledger.Hold:
        """Run ``act`` on a hold with its customer and account locked; answers the hold
        after it."""
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = self.ledger_store(uow)
            await store.lock(customer_id)
            found = await store.get_hold(customer_id, hold_id)
            if found is None:
                raise self.unit.not_found()
            await act(uow, store, found)
            found = await store.get_hold(customer_id, hold_id)
            await uow.commit()
        assert found is not None
        return found

    @staticmethod
    async def _once(
        uow: UnitOfWork,
        scope: str,
        customer_id: uuid.UUID,
        request_id: str,
        request: Message,
        action: Callable[[], Awaitable[str]],
    ) -> str:
        """``action`` once per request_id (bound to the caller): a retry answers the first
        result (an id, or ""), a reuse with other parameters is REQUEST_ID_REUSED."""

        async def run() -> wrappers_pb2.StringValue:
            return wrappers_pb2.StringValue(value=await action())

        done = await idempotent(
            uow,
            scope=f"{scope}:{customer_id}",
            request_id=request_id,
            request=request,
            response_type=wrappers_pb2.StringValue,
            action=run,
        )
        return done.value
