"""Customer use cases: the prepaid store card (top-up, pay through holds, balance, ledger).

Every change locks the customer row first, then changes the card in one conditional
statement (top-up within the maximum, hold within the available amount), writes
``StoreCardBalanceChanged`` to the outbox and commits; retries with the same request_id
answer the first result (the kit's idempotency, bound to the caller)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import loyalty as ld
from services.customer.domain import store_card as sd
from services.customer.store.store_card import StoreCardStore
from services.customer.usecases.common import Context, UseCase, acting_for, load_customer
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.idempotency import idempotent

SWEEP_BATCH = 100


@dataclass(frozen=True)
class StoreCardPolicy:
    max_balance_yen: int
    hold_ttl: timedelta


def _writer(principal: Principal, customer_ref: str) -> tuple[uuid.UUID, bool]:
    """Staff, services and devices (a POS) with storecard:write, never the customer herself.
    Also answers whether the caller is a device, whose channel and store are its token's."""
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE, PrincipalKind.DEVICE)
    principal.require_scope(sd.WRITE_SCOPE)
    ref = customer_ref.strip()
    if not ref or ref == "me":
        raise d.invalid("customer_id", "the customer's id", "CUSTOMER_ID_REQUIRED")
    return convert.parse_id(ref, "customer_id"), principal.kind is PrincipalKind.DEVICE


def _origin(principal: Principal, device: bool, channel: int, store_id: str) -> ld.Origin:
    if device:  # a device is where its token says, whatever it asks
        return ld.Origin(principal.channel, principal.store_id)
    store = store_id.strip()
    if store and not d.STORE_ID_PATTERN.match(store):
        raise d.invalid("store_id", "a store id (lower-case letters, digits, dashes)")
    return ld.Origin(channel or principal.channel, store or principal.store_id)


class StoreCards(UseCase):
    def __init__(self, context: Context, policy: StoreCardPolicy) -> None:
        super().__init__(context)
        self.cards = policy

    # ----------------------------------------------------------------------------- reads

    async def card(self, principal: Principal, customer_ref: str) -> sd.Card:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            found = await StoreCardStore(uow.session).get(customer_id)
        return found or sd.empty_card(customer_id)

    async def entries(
        self, principal: Principal, customer_ref: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, sd.Entry]]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal)
            return await StoreCardStore(uow.session).page(customer_id, before_seq, limit)

    # --------------------------------------------------------------------------- changes

    async def top_up(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        yen: int,
        reference: str,
        channel: int,
        store_id: str,
        request_id: str,
        request: Message,
    ) -> tuple[sd.Entry, sd.Card]:
        customer_id, device = _writer(principal, customer_ref)
        reference = ld.check_text(reference, "reference", ld.MAX_REFERENCE)
        origin = _origin(principal, device, channel, store_id)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = StoreCardStore(uow.session)
            await store.ensure(customer_id)

            async def add() -> wrappers_pb2.StringValue:
                entry = sd.Entry(
                    id=uuid.uuid4(),
                    customer_id=customer_id,
                    kind=sd.StoreCardEntryKind.TOP_UP,
                    amount=yen,
                    channel=origin.channel,
                    store_id=origin.store_id,
                    request_id=request_id,
                    reference=reference,
                    created_at=self.clock(),
                )
                card = await store.top_up(entry, self.cards.max_balance_yen)
                if card is None:
                    current = await store.get(customer_id) or sd.empty_card(customer_id)
                    raise sd.balance_limit(
                        yen,
                        self.cards.max_balance_yen - current.balance,
                        self.cards.max_balance_yen,
                    )
                self._announce(uow, card)
                return wrappers_pb2.StringValue(value=str(entry.id))

            done = await idempotent(
                uow,
                scope=f"TopUpStoreCard:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=add,
            )
            entry = await store.entry(customer_id, uuid.UUID(done.value))
            card = await store.get(customer_id)
            await uow.commit()
        assert entry is not None
        assert card is not None
        return entry, card

    async def reserve(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        yen: int,
        reference: str,
        channel: int,
        store_id: str,
        request_id: str,
        request: Message,
    ) -> sd.Hold:
        customer_id, device = _writer(principal, customer_ref)
        reference = ld.check_text(reference, "reference", ld.MAX_REFERENCE)
        origin = _origin(principal, device, channel, store_id)
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = StoreCardStore(uow.session)
            await store.ensure(customer_id)

            async def hold() -> wrappers_pb2.StringValue:
                now = self.clock()
                card = await store.hold(customer_id, yen, now)
                if card is None:
                    current = await store.get(customer_id) or sd.empty_card(customer_id)
                    raise sd.insufficient_funds(yen, current.available)
                held = sd.Hold(
                    id=uuid.uuid4(),
                    customer_id=customer_id,
                    amount=yen,
                    state=sd.StoreCardHoldState.HELD,
                    reference=reference,
                    channel=origin.channel,
                    store_id=origin.store_id,
                    created_at=now,
                    expires_at=now + self.cards.hold_ttl,
                )
                await store.insert_hold(held)
                self._announce(uow, card)
                return wrappers_pb2.StringValue(value=str(held.id))

            done = await idempotent(
                uow,
                scope=f"ReserveStoreCardPayment:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=hold,
            )
            found = await store.get_hold(customer_id, uuid.UUID(done.value))
            await uow.commit()
        assert found is not None
        return found

    async def commit(self, principal: Principal, customer_ref: str, hold_ref: str) -> sd.Hold:
        """Pay with a hold. Committing a committed hold answers it again (the saga retries)."""
        customer_id, _ = _writer(principal, customer_ref)
        hold_id = convert.parse_id(hold_ref, "hold_id")
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = StoreCardStore(uow.session)
            await store.lock(customer_id)
            held = await store.get_hold(customer_id, hold_id)
            if held is None:
                raise sd.hold_not_found()
            now = self.clock()
            sd.check_hold_open(held, now)
            if held.state is sd.StoreCardHoldState.HELD:
                entry = sd.Entry(
                    id=uuid.uuid4(),
                    customer_id=customer_id,
                    kind=sd.StoreCardEntryKind.PAYMENT,
                    amount=-held.amount,
                    channel=held.channel,
                    store_id=held.store_id,
                    request_id=str(held.id),
                    reference=held.reference,
                    created_at=now,
                )
                self._announce(uow, await store.pay(entry, held.amount))
                await store.set_hold_state(held.id, sd.StoreCardHoldState.COMMITTED, entry.id)
                held = await store.get_hold(customer_id, hold_id)
            await uow.commit()
        assert held is not None
        return held

    async def release(self, principal: Principal, customer_ref: str, hold_ref: str) -> sd.Hold:
        customer_id, _ = _writer(principal, customer_ref)
        hold_id = convert.parse_id(hold_ref, "hold_id")
        async with self.db.unit_of_work() as uow:
            await load_customer(uow, customer_id, principal, lock=True)
            store = StoreCardStore(uow.session)
            await store.lock(customer_id)
            held = await store.get_hold(customer_id, hold_id)
            if held is None:
                raise sd.hold_not_found()
            if held.state is sd.StoreCardHoldState.HELD:
                await self._release(uow, store, held)
                held = await store.get_hold(customer_id, hold_id)
            await uow.commit()
        assert held is not None
        return held

    async def sweep(self) -> int:
        """Release holds past their expiry, one batch of cards per transaction."""
        now = self.clock()
        changed = 0
        while True:
            async with self.db.unit_of_work() as uow:
                store = StoreCardStore(uow.session)
                cards = await store.cards_with_expired_holds(now, SWEEP_BATCH)
                for customer_id in cards:
                    for held in await store.expired_holds(customer_id, now):
                        await self._release(uow, store, held)
                await uow.commit()
            changed += len(cards)
            if len(cards) < SWEEP_BATCH:
                return changed

    async def _release(self, uow: UnitOfWork, store: StoreCardStore, held: sd.Hold) -> None:
        await store.set_hold_state(held.id, sd.StoreCardHoldState.RELEASED)
        self._announce(
            uow, await store.change_reserved(held.customer_id, -held.amount, self.clock())
        )

    @staticmethod
    def _announce(uow: UnitOfWork, card: sd.Card) -> None:
        uow.add_event(
            events_pb2.StoreCardBalanceChanged(
                customer_id=str(card.customer_id),
                balance_yen=card.balance,
                reserved_yen=card.reserved,
                version=card.version,
                change_time=convert.timestamp(card.updated_at),
            )
        )
