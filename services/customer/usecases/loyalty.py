"""Customer use cases: loyalty points (earn, adjust, reverse, reserve/commit/release, expiry).

The ledger-with-holds flows are ``usecases/ledger.py``'s; here is what only points have:
earn rules, lots spent oldest first and expiring, reversals. Every change locks the account
row first, appends to the ledger with the balance in the same statement, publishes
``LoyaltyBalanceChanged`` through the outbox (which ``WatchBalance`` on every replica
follows) and projects the entry into the customer's timeline, all in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from google.protobuf.message import Message

from services.customer import convert
from services.customer.domain import loyalty as ld
from services.customer.domain import timeline as td
from services.customer.store.loyalty import LoyaltyStore
from services.customer.store.orders import OrderStore
from services.customer.store.timeline import TimelineStore
from services.customer.usecases.common import Context, acting_for, load_customer
from services.customer.usecases.ledger import SWEEP_BATCH, ChangeRequest, HeldLedger
from services.customer.usecases.ledger import origin as ledger_origin
from services.customer.watch import BalanceHub, BalanceUpdate
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.metrics import POINTS_EARNED, touchpoint

#: A step of the sweep on one locked account.
SweepStep = Callable[[UnitOfWork, "LoyaltyStore", uuid.UUID, datetime], Awaitable[None]]


@dataclass(frozen=True)
class LoyaltyPolicy:
    rules: ld.EarnRules
    reservation_ttl: timedelta
    watch_max_seconds: float


def _writer(principal: Principal, customer_ref: str) -> uuid.UUID:
    """Points change only by staff and services (the order saga, a POS back end), never by
    the customer herself: she redeems through a checkout."""
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    return acting_for(principal, customer_ref, staff_scope=ld.LOYALTY_WRITE_SCOPE)


class Loyalty(HeldLedger[ld.Account, ld.Entry, LoyaltyStore]):
    unit, hold_state, store_type = ld.POINTS, ld.ReservationState, LoyaltyStore
    empty = staticmethod(ld.empty_account)

    def __init__(self, context: Context, policy: LoyaltyPolicy, hub: BalanceHub) -> None:
        super().__init__(context)
        self.loyalty = policy
        self.hold_ttl = policy.reservation_ttl
        self.hub = hub
        #: More work of the sweep on each locked account (order earnings, tiers).
        self.sweep_steps: list[SweepStep] = []

    # ----------------------------------------------------------------------------- reads

    async def balance(self, principal: Principal, customer_ref: str) -> ld.Account:
        return await self.read_account(principal, customer_ref)

    async def entries(
        self, principal: Principal, customer_ref: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, ld.Entry]]:
        return await self.read_entries(principal, customer_ref, before_seq, limit)

    async def watch(self, principal: Principal, customer_ref: str) -> AsyncIterator[BalanceUpdate]:
        """The balance now, then every change, for the stream's maximum duration."""
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
        async for update in self.hub.watch(customer_id, max_seconds=self.loyalty.watch_max_seconds):
            yield update

    # --------------------------------------------------------------------------- changes

    async def earn(
        self, principal: Principal, customer_ref: str, *, yen: int, change: ChangeRequest
    ) -> tuple[ld.Entry | None, ld.Account]:
        customer_id = _writer(principal, customer_ref)
        reference = ld.check_text(change.reference, "reference", ld.MAX_REFERENCE)
        origin = ledger_origin(principal, change.channel, change.store_id)
        request_id = change.request_id

        async def action(uow: UnitOfWork, store: LoyaltyStore, account: ld.Account) -> str:
            points = self.loyalty.rules.points_for(yen, account.tier)
            if points <= 0:
                return ""
            now = self.clock()
            entry = self.new_entry(
                customer_id, ld.LedgerEntryKind.EARN, points, origin, request_id, reference, now
            )
            entry = _with_expiry(entry, now + self.loyalty.rules.points_ttl)
            await self.append_entry(uow, store, entry, remaining=points)
            return str(entry.id)

        return await self.change(
            "EarnPoints", customer_id, principal, request_id, change.request, action
        )

    async def adjust(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        points: int,
        reason: str,
        request_id: str,
        request: Message,
    ) -> tuple[ld.Entry | None, ld.Account]:
        customer_id = _writer(principal, customer_ref)
        points = ld.check_points(points, "points", allow_negative=True)
        reason = ld.check_text(reason, "reason", ld.MAX_REASON)
        origin = ld.Origin(principal.channel, principal.store_id)

        async def action(uow: UnitOfWork, store: LoyaltyStore, account: ld.Account) -> str:
            now = self.clock()
            entry = self.new_entry(
                customer_id, ld.LedgerEntryKind.ADJUST, points, origin, request_id, reason, now
            )
            if points > 0:
                entry = _with_expiry(entry, now + self.loyalty.rules.points_ttl)
                await self.append_entry(uow, store, entry, remaining=points)
            else:
                if account.available < -points:
                    raise ld.insufficient_points(-points, account.available)
                await self._spend(store, customer_id, -points)
                await self.append_entry(uow, store, entry)
            return str(entry.id)

        return await self.change(
            "AdjustPoints", customer_id, principal, request_id, request, action
        )

    async def reverse(
        self,
        principal: Principal,
        customer_ref: str,
        entry_ref: str,
        *,
        request_id: str,
        request: Message,
    ) -> tuple[ld.Entry | None, ld.Account]:
        customer_id = _writer(principal, customer_ref)
        entry_id = convert.parse_id(entry_ref, "entry_id")
        origin = ld.Origin(principal.channel, principal.store_id)

        async def action(uow: UnitOfWork, store: LoyaltyStore, account: ld.Account) -> str:
            original = await store.entry(customer_id, entry_id)
            if original is None:
                raise ld.entry_not_found()
            ld.check_reversible(original)
            done = await store.reversal_of(entry_id)
            if done is not None:
                return str(done.id)  # reversing twice takes nothing twice
            points = original.points
            # An order's EARN entry may have lost points to returns already: only the rest
            # goes now, and the order's earning is then fully reversed.
            orders = OrderStore(uow.session)
            earning = await orders.earning_of_entry(original.id)
            if earning is not None:
                points -= earning.reversed_in_ledger
                if points <= 0:
                    raise ld.reversed_by_returns()
                await orders.update_earning(earning.order_id, reversed=earning.points)
            now = self.clock()
            entry = self.new_entry(
                customer_id,
                ld.LedgerEntryKind.REVERSE,
                -points,
                origin,
                request_id,
                str(original.id),
                now,
            )
            entry = replace(entry, reverses=original.id)
            # The whole lot goes, spent or not: a balance turning negative is recorded.
            await self.take_back(uow, store, entry, original.id, original.remaining)
            return str(entry.id)

        return await self.change(
            "ReverseEntry", customer_id, principal, request_id, request, action
        )

    async def reserve(
        self, principal: Principal, customer_ref: str, *, points: int, change: ChangeRequest
    ) -> ld.Reservation:
        customer_id = _writer(principal, customer_ref)
        points = ld.check_points(points, "points")
        return await self.hold(
            "ReservePoints", principal, customer_id, amount=points, change=change
        )

    async def commit(
        self,
        principal: Principal,
        customer_ref: str,
        reservation_ref: str,
    ) -> ld.Reservation:
        """Redeem a hold. Committing a committed hold answers it again (the saga retries)."""
        customer_id = _writer(principal, customer_ref)
        reservation_id = convert.parse_id(reservation_ref, "reservation_id")
        return await self.commit_hold(principal, customer_id, reservation_id)

    async def release(
        self, principal: Principal, customer_ref: str, reservation_ref: str
    ) -> ld.Reservation:
        customer_id = _writer(principal, customer_ref)
        reservation_id = convert.parse_id(reservation_ref, "reservation_id")
        return await self.release_hold(principal, customer_id, reservation_id)

    # ------------------------------------------------------------------ the ledger's hooks

    async def accounts_due(
        self, store: LoyaltyStore, now: datetime, after: uuid.UUID | None
    ) -> list[uuid.UUID]:
        """Also accounts with an expired lot, an order earning past its window, a tier due
        for review: the sweep expires lots oldest first and runs ``sweep_steps`` too."""
        return await store.accounts_due(now, SWEEP_BATCH, after)

    async def write_commit(
        self, uow: UnitOfWork, store: LoyaltyStore, hold: ld.Reservation, now: datetime
    ) -> uuid.UUID:
        entry = self.new_entry(
            hold.customer_id,
            ld.LedgerEntryKind.REDEEM,
            -hold.amount,
            ld.Origin(hold.channel, hold.store_id),
            str(hold.id),
            hold.reference,
            now,
        )
        await self._spend(store, hold.customer_id, hold.amount)
        await self.append_entry(uow, store, entry, reserved_delta=-hold.amount)
        return entry.id

    # ---------------------------------------------------------------------------- helpers

    async def take_back(
        self,
        uow: UnitOfWork,
        store: LoyaltyStore,
        entry: ld.Entry,
        lot_id: uuid.UUID,
        from_lot: int,
    ) -> ld.Account:
        """Append a negative ``entry`` that takes ``from_lot`` points from its lot and the
        rest from the balance, even into the negative (recorded, not hidden)."""
        if from_lot > 0:
            await store.take_from_lots([(lot_id, from_lot)])
        after = await self.append_entry(uow, store, entry)
        # Points of the lot that were spent are now owed by the other lots: keep what
        # the lots hold within the balance, so no later earning expires in their place.
        lots = await store.open_lots(entry.customer_id)
        excess = sum(lot.remaining for lot in lots) - max(after.balance, 0)
        if excess > 0:
            await store.take_from_lots(ld.spend_oldest_first(lots, excess))
        return after

    async def sweep_account(
        self, uow: UnitOfWork, store: LoyaltyStore, customer_id: uuid.UUID, now: datetime
    ) -> None:
        for extra in self.sweep_steps:
            await extra(uow, store, customer_id, now)
        await super().sweep_account(uow, store, customer_id, now)
        account = await store.lock(customer_id)
        lots = await store.expired_lots(customer_id, now)
        for lot in lots:
            points, kept = ld.expire_lot(lot.remaining, account)
            if lot.remaining - kept > 0:
                await store.take_from_lots([(lot.entry_id, lot.remaining - kept)])
            if points <= 0:
                continue
            entry = self.new_entry(
                customer_id,
                ld.LedgerEntryKind.EXPIRE,
                -points,
                ld.Origin(0, None),
                "",
                str(lot.entry_id),
                now,
            )
            account = await self.append_entry(uow, store, entry)

    async def _spend(self, store: LoyaltyStore, customer_id: uuid.UUID, points: int) -> None:
        lots = await store.open_lots(customer_id)
        await store.take_from_lots(ld.spend_oldest_first(lots, points))

    async def append_entry(
        self,
        uow: UnitOfWork,
        store: LoyaltyStore,
        entry: ld.Entry,
        *,
        remaining: int = 0,
        reserved_delta: int = 0,
    ) -> ld.Account:
        account = await store.append_entry(
            entry, remaining=remaining, reserved_delta=reserved_delta
        )
        self.announce(uow, account)
        if entry.kind is ld.LedgerEntryKind.EARN:
            uow.count(POINTS_EARNED, entry.points, channel=touchpoint(entry.channel))
        # The timeline shows points too: projected in the same transaction, never lost.
        await TimelineStore(uow.session).insert(
            td.Interaction(
                id=uuid.uuid4(),
                customer_id=entry.customer_id,
                kind=td.InteractionKind.LOYALTY,
                sku="",
                size="",
                channel=entry.channel,
                store_id=entry.store_id,
                device_id=None,
                summary=f"{entry.kind.name} {entry.points:+d}",
                created_at=entry.created_at,
            )
        )
        return account

    def announce(self, uow: UnitOfWork, account: ld.Account) -> None:
        uow.add_event(
            events_pb2.LoyaltyBalanceChanged(
                customer_id=str(account.customer_id),
                balance=account.balance,
                reserved=account.reserved,
                version=account.version,
                change_time=convert.timestamp(account.updated_at),
                pending=account.pending,
                tier=account.tier,
            )
        )

    @staticmethod
    def new_entry(
        customer_id: uuid.UUID,
        kind: ld.LedgerEntryKind,
        points: int,
        origin: ld.Origin,
        request_id: str,
        reference: str,
        now: datetime,
    ) -> ld.Entry:
        return ld.Entry(
            id=uuid.uuid4(),
            customer_id=customer_id,
            kind=kind,
            points=points,
            channel=origin.channel,
            store_id=origin.store_id,
            request_id=request_id,
            reference=reference,
            created_at=now,
        )


def _with_expiry(entry: ld.Entry, expires_at: datetime) -> ld.Entry:
    return replace(entry, expires_at=expires_at)
