"""Store card persistence: the card row, its append-only ledger, payment holds.

Lock order as for points: the customer row, then the card row (``lock`` or one of the
single-statement conditional updates), then its entries and holds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.customer.domain import store_card as sd
from services.customer.models import store_card_entries, store_card_holds, store_cards

_K, _E, _H = store_cards.c, store_card_entries.c, store_card_holds.c


def _card(row: Any) -> sd.Card:
    return sd.Card(row.customer_id, row.balance, row.reserved, row.version, row.updated_at)


def _entry(row: Any) -> sd.Entry:
    return sd.Entry(
        id=row.id,
        customer_id=row.customer_id,
        kind=sd.StoreCardEntryKind(row.kind),
        amount=row.amount,
        channel=row.channel,
        store_id=row.store_id,
        request_id=row.request_id,
        reference=row.reference,
        created_at=row.created_at,
    )


def _hold(row: Any) -> sd.Hold:
    return sd.Hold(
        id=row.id,
        customer_id=row.customer_id,
        amount=row.amount,
        state=sd.StoreCardHoldState(row.state),
        reference=row.reference,
        channel=row.channel,
        store_id=row.store_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        entry_id=row.entry_id,
    )


class StoreCardStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: uuid.UUID) -> sd.Card | None:
        row = (
            await self.session.execute(sa.select(store_cards).where(_K.customer_id == customer_id))
        ).first()
        return _card(row) if row else None

    async def ensure(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            pg.insert(store_cards)
            .values(customer_id=customer_id)
            .on_conflict_do_nothing(index_elements=["customer_id"])
        )

    async def lock(self, customer_id: uuid.UUID) -> sd.Card:
        await self.ensure(customer_id)
        row = (
            await self.session.execute(
                sa.select(store_cards).where(_K.customer_id == customer_id).with_for_update()
            )
        ).one()
        return _card(row)

    async def top_up(self, entry: sd.Entry, maximum: int) -> sd.Card | None:
        """Insert the TOP_UP entry and add it to the balance in one statement, if the
        balance stays within ``maximum``; None (nothing written) if it would not."""
        return await self._append(entry, _K.balance + entry.amount <= maximum)

    async def pay(self, entry: sd.Entry, hold_amount: int) -> sd.Card:
        """The PAYMENT entry of a held amount: balance and reserved fall together."""
        card = await self._append(entry, sa.true(), reserved_delta=-hold_amount)
        assert card is not None
        return card

    async def _append(
        self, entry: sd.Entry, condition: sa.ColumnElement[bool], reserved_delta: int = 0
    ) -> sd.Card | None:
        # The card is updated first (conditionally); the entry is inserted only from its
        # returned row, so the two are written together or not at all.
        updated = (
            sa.update(store_cards)
            .where(_K.customer_id == entry.customer_id, condition)
            .values(
                balance=_K.balance + entry.amount,
                reserved=_K.reserved + reserved_delta,
                version=_K.version + 1,
                updated_at=entry.created_at,
            )
            .returning(*store_cards.c)
            .cte("updated")
        )
        inserted = (
            pg.insert(store_card_entries)
            .from_select(
                [
                    "id",
                    "customer_id",
                    "kind",
                    "amount",
                    "channel",
                    "store_id",
                    "request_id",
                    "reference",
                    "created_at",
                ],
                sa.select(
                    sa.literal(entry.id, pg.UUID(as_uuid=True)),
                    updated.c.customer_id,
                    sa.literal(int(entry.kind), sa.SmallInteger),
                    sa.literal(entry.amount, sa.BigInteger),
                    sa.literal(entry.channel, sa.SmallInteger),
                    sa.literal(entry.store_id, sa.Text),
                    sa.literal(entry.request_id, sa.Text),
                    sa.literal(entry.reference, sa.Text),
                    sa.literal(entry.created_at, sa.DateTime(timezone=True)),
                ),
            )
            .returning(_E.id)
            .cte("inserted")
        )
        # PostgreSQL runs a data-modifying CTE whether or not the query reads it.
        statement = sa.select(updated).add_cte(inserted)
        row = (await self.session.execute(statement)).first()
        return _card(row) if row else None

    async def hold(self, customer_id: uuid.UUID, amount: int, now: datetime) -> sd.Card | None:
        """Hold ``amount`` if that much is available, in one statement: concurrent holds
        queue on the row lock and re-check, so together they never exceed the balance."""
        row = (
            await self.session.execute(
                sa.update(store_cards)
                .where(_K.customer_id == customer_id, _K.balance - _K.reserved >= amount)
                .values(reserved=_K.reserved + amount, version=_K.version + 1, updated_at=now)
                .returning(*store_cards.c)
            )
        ).first()
        return _card(row) if row else None

    async def change_reserved(self, customer_id: uuid.UUID, delta: int, now: datetime) -> sd.Card:
        row = (
            await self.session.execute(
                sa.update(store_cards)
                .where(_K.customer_id == customer_id)
                .values(reserved=_K.reserved + delta, version=_K.version + 1, updated_at=now)
                .returning(*store_cards.c)
            )
        ).one()
        return _card(row)

    async def entry(self, customer_id: uuid.UUID, entry_id: uuid.UUID) -> sd.Entry | None:
        row = (
            await self.session.execute(
                sa.select(store_card_entries).where(
                    _E.customer_id == customer_id, _E.id == entry_id
                )
            )
        ).first()
        return _entry(row) if row else None

    async def page(
        self, customer_id: uuid.UUID, before_seq: int | None, limit: int
    ) -> list[tuple[int, sd.Entry]]:
        query = sa.select(store_card_entries).where(_E.customer_id == customer_id)
        if before_seq is not None:
            query = query.where(_E.seq < before_seq)
        rows = await self.session.execute(query.order_by(_E.seq.desc()).limit(limit))
        return [(row.seq, _entry(row)) for row in rows]

    async def insert_hold(self, hold: sd.Hold) -> None:
        await self.session.execute(
            sa.insert(store_card_holds).values(
                id=hold.id,
                customer_id=hold.customer_id,
                amount=hold.amount,
                state=int(hold.state),
                reference=hold.reference,
                channel=hold.channel,
                store_id=hold.store_id,
                created_at=hold.created_at,
                expires_at=hold.expires_at,
            )
        )

    async def get_hold(self, customer_id: uuid.UUID, hold_id: uuid.UUID) -> sd.Hold | None:
        row = (
            await self.session.execute(
                sa.select(store_card_holds).where(_H.customer_id == customer_id, _H.id == hold_id)
            )
        ).first()
        return _hold(row) if row else None

    async def set_hold_state(
        self, hold_id: uuid.UUID, state: sd.StoreCardHoldState, entry_id: uuid.UUID | None = None
    ) -> None:
        await self.session.execute(
            sa.update(store_card_holds)
            .where(_H.id == hold_id)
            .values(state=int(state), entry_id=entry_id)
        )

    async def cards_with_expired_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Locked, SKIP LOCKED: replicas sweep different cards and never wait for a sale."""
        expired = sa.exists().where(
            _H.customer_id == _K.customer_id,
            _H.state == int(sd.StoreCardHoldState.HELD),
            _H.expires_at <= now,
        )
        rows = await self.session.execute(
            sa.select(_K.customer_id)
            .where(expired)
            .order_by(_K.customer_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [row.customer_id for row in rows]

    async def expired_holds(self, customer_id: uuid.UUID, now: datetime) -> list[sd.Hold]:
        rows = await self.session.execute(
            sa.select(store_card_holds).where(
                _H.customer_id == customer_id,
                _H.state == int(sd.StoreCardHoldState.HELD),
                _H.expires_at <= now,
            )
        )
        return [_hold(row) for row in rows]
