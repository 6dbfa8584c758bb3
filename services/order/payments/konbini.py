"""The konbini (convenience-store) payment adapter, with a sandbox konbini network
in-process: a payment number and a deadline are issued at checkout, the customer pays
cash at a store's till, the network notifies the shop (``RecordKonbiniPayment``), or the
deadline passes and the number is voided.

Its ledger is its own table (``konbini_payments``), written in transactions of its own,
never the saga's — it plays the outside network, whose state outlives an order-service
crash. A payment is accepted only while the number is issued and before its deadline; a
void is accepted only while it is issued; so a payment and an expiry never both win.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from services.order.domain.payments import Authorization, PaymentDeclined
from services.order.models import konbini_payments
from tenpo.kit.db import Database

ISSUED = "issued"
PAID = "paid"
VOIDED = "voided"
NUMBER_DIGITS = 12


@dataclass(frozen=True)
class KonbiniPayment:
    key: str
    number: str
    amount: int
    deadline: datetime
    state: str

    @property
    def order_id(self) -> str:
        """The order the number was issued for (keys are ``<order id>:authorize``)."""
        return self.key.split(":", 1)[0]


class KonbiniPayments:
    def __init__(self, db: Database, window: timedelta) -> None:
        self.db = db
        #: How long a payment number is accepted.
        self.window = window

    async def authorize(
        self, key: str, *, amount: int, currency: str, card_token: str
    ) -> Authorization:
        """Issue the payment number (again for the same key: the same number)."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                pg.insert(konbini_payments)
                .values(
                    key=key,
                    number="".join(secrets.choice("0123456789") for _ in range(NUMBER_DIGITS)),
                    amount=amount,
                    currency=currency,
                    deadline=sa.func.now() + self.window,
                    state=ISSUED,
                )
                .on_conflict_do_nothing(index_elements=["key"])
            )
            row = (
                await uow.session.execute(
                    sa.select(konbini_payments).where(konbini_payments.c.key == key)
                )
            ).one()
            await uow.commit()
        if row.amount != amount:
            raise PaymentDeclined("IDEMPOTENCY_KEY_REUSED", "the key was used for another amount")
        return Authorization(
            id=row.number, amount=amount, currency=currency, expires_at=row.deadline
        )

    async def capture(self, key: str, *, authorization_key: str, amount: int) -> None:
        return None  # cash at the till is taken when it is paid

    async def void(self, key: str, *, authorization_key: str) -> None:
        """Withdraw an unpaid number (a failed checkout, an expired deadline)."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                sa.update(konbini_payments)
                .where(
                    konbini_payments.c.key == authorization_key,
                    konbini_payments.c.state == ISSUED,
                )
                .values(state=VOIDED)
            )
            await uow.commit()

    async def refund(self, key: str, *, authorization_key: str, amount: int) -> None:
        return None  # a konbini refund is a bank transfer arranged by staff

    async def find(self, number: str) -> KonbiniPayment | None:
        async with self.db.unit_of_work() as uow:
            row = (
                await uow.session.execute(
                    sa.select(konbini_payments).where(konbini_payments.c.number == number)
                )
            ).first()
        return _payment(row) if row else None

    async def state(self, authorization_key: str) -> str | None:
        async with self.db.unit_of_work() as uow:
            state: str | None = await uow.session.scalar(
                sa.select(konbini_payments.c.state).where(
                    konbini_payments.c.key == authorization_key
                )
            )
        return state

    async def expire(self, authorization_key: str) -> str | None:
        """Void the number if its deadline has passed unpaid (by the database's clock, the
        same that ``pay`` reads); the state afterwards (None: never issued)."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                sa.update(konbini_payments)
                .where(
                    konbini_payments.c.key == authorization_key,
                    konbini_payments.c.state == ISSUED,
                    konbini_payments.c.deadline <= sa.func.now(),
                )
                .values(state=VOIDED)
            )
            state: str | None = await uow.session.scalar(
                sa.select(konbini_payments.c.state).where(
                    konbini_payments.c.key == authorization_key
                )
            )
            await uow.commit()
        return state

    async def pay(self, number: str) -> KonbiniPayment | None:
        """The money came at a till: accepted while issued and before the deadline (again
        for a paid number: as it is). None when the number is unknown."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                sa.update(konbini_payments)
                .where(
                    konbini_payments.c.number == number,
                    konbini_payments.c.state == ISSUED,
                    konbini_payments.c.deadline > sa.func.now(),
                )
                .values(state=PAID, paid_at=sa.func.now())
            )
            row = (
                await uow.session.execute(
                    sa.select(konbini_payments).where(konbini_payments.c.number == number)
                )
            ).first()
            await uow.commit()
        return _payment(row) if row else None


def _payment(row: sa.Row[tuple[object, ...]]) -> KonbiniPayment:
    return KonbiniPayment(
        key=row.key, number=row.number, amount=row.amount, deadline=row.deadline, state=row.state
    )


__all__ = ["ISSUED", "PAID", "VOIDED", "KonbiniPayment", "KonbiniPayments"]
