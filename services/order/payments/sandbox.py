"""The sandbox payment provider: behaves like a card PSP so the saga meets real failure
modes, in-process, with its ledger in its own table of the order database.

In-process rather than its own process: nothing more to run or deploy for development and
tests, and the ledger is committed in transactions of its own (never the saga's), so after
an order-service crash it still knows what was authorized, exactly as an external PSP would.

Test cards (the card token is the number):

| card | outcome |
|---|---|
| 4242424242424242 (any other number too) | approved |
| 4000000000000002 | declined: PAYMENT_DECLINED |
| 4000000000009995 | declined: INSUFFICIENT_FUNDS |
| 4000000000000259 | authorizes, then never answers (the caller's deadline passes) |
| 4000000000003220 | approved after a delay shorter than the deadline |
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from services.order.domain.payments import Authorization, PaymentDeclined, PaymentUnavailable
from services.order.models import sandbox_payments
from tenpo.kit.db import Database

APPROVED = "approved"
DECLINE_CARD = "4000000000000002"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"
TIMEOUT_CARD = "4000000000000259"
DELAYED_CARD = "4000000000003220"
_DECLINES = {
    DECLINE_CARD: ("PAYMENT_DECLINED", "the card was declined"),
    INSUFFICIENT_FUNDS_CARD: ("INSUFFICIENT_FUNDS", "the card has insufficient funds"),
}

#: Record an authorization unless its key is known, and answer the stored one. A void that
#: arrived first (the caller gave up on a slow authorize) wins. The row inserted here is
#: returned by the CTE; one stored earlier by the plain SELECT (the statement's snapshot
#: does not show the CTE's own insert, so never both).
_AUTHORIZE = sa.text(
    """
WITH inserted AS (
    INSERT INTO sandbox_payments (key, operation, amount, currency, outcome)
    SELECT :key, 'authorize', :amount, :currency,
           CASE WHEN EXISTS (SELECT 1 FROM sandbox_payments
                             WHERE operation = 'void' AND authorization_key = :key)
                THEN 'declined:AUTHORIZATION_VOIDED' ELSE :outcome END
    ON CONFLICT DO NOTHING
    RETURNING amount, outcome
)
SELECT amount, outcome FROM inserted
UNION ALL
SELECT amount, outcome FROM sandbox_payments WHERE key = :key
"""
)


class SandboxPayments:
    def __init__(
        self, db: Database, *, delay_seconds: float = 0.2, hang_seconds: float = 60.0
    ) -> None:
        self.db = db
        self.delay_seconds = delay_seconds
        self.hang_seconds = hang_seconds

    async def authorize(
        self, key: str, *, amount: int, currency: str, card_token: str
    ) -> Authorization:
        declined = _DECLINES.get(card_token)
        outcome = f"declined:{declined[0]}" if declined else APPROVED
        stored = None
        for _ in range(2):
            # One statement, committed on its own (one round trip). A concurrent authorize
            # of the same key that committed after this statement began is not visible to
            # it (no row): asked again, the next statement sees it.
            async with self.db.autocommit() as connection:
                stored = (
                    await connection.execute(
                        _AUTHORIZE,
                        {"key": key, "amount": amount, "currency": currency, "outcome": outcome},
                    )
                ).first()
            if stored is not None:
                break
        if stored is None:
            raise PaymentUnavailable("the sandbox provider did not answer")
        if card_token == TIMEOUT_CARD:
            # Taken, but the answer never comes: the caller's deadline decides.
            await asyncio.sleep(self.hang_seconds)
            raise PaymentUnavailable("the sandbox provider did not answer")
        if card_token == DELAYED_CARD:
            await asyncio.sleep(self.delay_seconds)
        if stored.amount != amount:
            raise PaymentDeclined("IDEMPOTENCY_KEY_REUSED", "the key was used for another amount")
        if stored.outcome != APPROVED:
            reason = stored.outcome.removeprefix("declined:")
            raise PaymentDeclined(reason, _DECLINES.get(card_token, (reason, reason))[1])
        return Authorization(id=f"sbx_{key}", amount=amount, currency=currency)

    async def capture(self, key: str, *, authorization_key: str, amount: int) -> None:
        await self._record(key, "capture", authorization_key, amount)

    async def void(self, key: str, *, authorization_key: str) -> None:
        await self._record(key, "void", authorization_key, 0)

    async def refund(self, key: str, *, authorization_key: str, amount: int) -> None:
        await self._record(key, "refund", authorization_key, amount)

    async def state(self, authorization_key: str) -> str:
        """approved / declined:* / voided / captured / none: what tests and staff see."""
        async with self.db.unit_of_work() as uow:
            rows = (
                await uow.session.execute(
                    sa.select(sandbox_payments.c.operation, sandbox_payments.c.outcome).where(
                        sa.or_(
                            sandbox_payments.c.key == authorization_key,
                            sandbox_payments.c.authorization_key == authorization_key,
                        )
                    )
                )
            ).all()
        operations = {row.operation: row.outcome for row in rows}
        if "void" in operations:
            return "voided"
        if "capture" in operations:
            return "captured"
        return operations.get("authorize", "none")

    async def _record(self, key: str, operation: str, authorization_key: str, amount: int) -> None:
        async with self.db.autocommit() as connection:  # one statement: commits on its own
            await connection.execute(
                pg.insert(sandbox_payments)
                .values(
                    key=key,
                    operation=operation,
                    authorization_key=authorization_key,
                    amount=amount,
                    outcome=APPROVED,
                )
                .on_conflict_do_nothing()
            )


class PayAtStore:
    """Click & collect paid at pickup: nothing is held now; the POS captures at pickup."""

    async def authorize(
        self, key: str, *, amount: int, currency: str, card_token: str
    ) -> Authorization:
        return Authorization(id="", amount=amount, currency=currency)

    async def capture(self, key: str, *, authorization_key: str, amount: int) -> None:
        return None

    async def void(self, key: str, *, authorization_key: str) -> None:
        return None

    async def refund(self, key: str, *, authorization_key: str, amount: int) -> None:
        return None


__all__ = ["PayAtStore", "PaymentUnavailable", "SandboxPayments"]
