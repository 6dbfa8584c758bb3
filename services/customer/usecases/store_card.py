"""Customer use cases: the prepaid store card (top-up, pay through holds, balance, ledger).

The ledger-with-holds flows are ``usecases/ledger.py``'s (the same as for points); here is
what only the card has: who may write (a POS device too, whose channel and store are its
token's), the top-up within the card's maximum (one conditional statement), and
``StoreCardBalanceChanged`` as the announcement of every change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import ledger
from services.customer.domain import loyalty as ld
from services.customer.domain import store_card as sd
from services.customer.store.store_card import StoreCardStore
from services.customer.usecases.common import Context
from services.customer.usecases.ledger import ChangeRequest, HeldLedger
from services.customer.usecases.ledger import origin as ledger_origin
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork


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


def _origin(principal: Principal, device: bool, channel: int, store_id: str) -> ledger.Origin:
    if device:  # a device is where its token says, whatever it asks
        return ledger.Origin(principal.channel, principal.store_id)
    return ledger_origin(principal, channel, store_id)


class StoreCards(HeldLedger[sd.Card, sd.Entry, StoreCardStore]):
    unit, hold_state, store_type = sd.YEN, sd.StoreCardHoldState, StoreCardStore
    empty = staticmethod(sd.empty_card)

    def __init__(self, context: Context, policy: StoreCardPolicy) -> None:
        super().__init__(context)
        self.cards = policy
        self.hold_ttl = policy.hold_ttl

    # ----------------------------------------------------------------------------- reads

    async def card(self, principal: Principal, customer_ref: str) -> sd.Card:
        return await self.read_account(principal, customer_ref)

    async def entries(
        self, principal: Principal, customer_ref: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, sd.Entry]]:
        return await self.read_entries(principal, customer_ref, before_seq, limit)

    # --------------------------------------------------------------------------- changes

    async def top_up(
        self, principal: Principal, customer_ref: str, *, yen: int, change: ChangeRequest
    ) -> tuple[sd.Entry, sd.Card]:
        customer_id, device = _writer(principal, customer_ref)
        reference = ld.check_text(change.reference, "reference", ld.MAX_REFERENCE)
        where = _origin(principal, device, change.channel, change.store_id)
        request_id = change.request_id
        maximum = self.cards.max_balance_yen

        async def add(uow: UnitOfWork, store: StoreCardStore, _: sd.Card) -> str:
            entry = sd.Entry(
                id=uuid.uuid4(),
                customer_id=customer_id,
                kind=sd.StoreCardEntryKind.TOP_UP,
                amount=yen,
                channel=where.channel,
                store_id=where.store_id,
                request_id=request_id,
                reference=reference,
                created_at=self.clock(),
            )
            card = await store.top_up(entry, maximum)
            if card is None:
                current = await store.get(customer_id) or sd.empty_card(customer_id)
                raise sd.balance_limit(yen, maximum - current.balance, maximum)
            self.announce(uow, card)
            return str(entry.id)

        entry, card = await self.change(
            "TopUpStoreCard", customer_id, principal, request_id, change.request, add
        )
        assert entry is not None
        return entry, card

    async def reserve(
        self, principal: Principal, customer_ref: str, *, yen: int, change: ChangeRequest
    ) -> sd.Hold:
        customer_id, device = _writer(principal, customer_ref)
        where = _origin(principal, device, change.channel, change.store_id)
        scope = "ReserveStoreCardPayment"
        return await self.hold(
            scope, principal, customer_id, amount=yen, change=change, where=where
        )

    async def commit(self, principal: Principal, customer_ref: str, hold_ref: str) -> sd.Hold:
        """Pay with a hold. Committing a committed hold answers it again (the saga retries)."""
        customer_id, _ = _writer(principal, customer_ref)
        return await self.commit_hold(principal, customer_id, convert.parse_id(hold_ref, "hold_id"))

    async def release(self, principal: Principal, customer_ref: str, hold_ref: str) -> sd.Hold:
        customer_id, _ = _writer(principal, customer_ref)
        return await self.release_hold(
            principal, customer_id, convert.parse_id(hold_ref, "hold_id")
        )

    # ------------------------------------------------------------------ the ledger's hooks

    async def write_commit(
        self, uow: UnitOfWork, store: StoreCardStore, hold: sd.Hold, now: datetime
    ) -> uuid.UUID:
        entry = sd.Entry(
            id=uuid.uuid4(),
            customer_id=hold.customer_id,
            kind=sd.StoreCardEntryKind.PAYMENT,
            amount=-hold.amount,
            channel=hold.channel,
            store_id=hold.store_id,
            request_id=str(hold.id),
            reference=hold.reference,
            created_at=now,
        )
        self.announce(uow, await store.pay(entry, hold.amount))
        return entry.id

    def announce(self, uow: UnitOfWork, card: sd.Card) -> None:
        uow.add_event(
            events_pb2.StoreCardBalanceChanged(
                customer_id=str(card.customer_id),
                balance_yen=card.balance,
                reserved_yen=card.reserved,
                version=card.version,
                change_time=convert.timestamp(card.updated_at),
            )
        )
