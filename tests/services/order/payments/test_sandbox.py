"""The sandbox PSP's ledger: one authorization per key whatever the concurrency, a void
that came first wins, the answer is the stored one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa

from services.order.app import definition
from services.order.domain.payments import PaymentDeclined
from services.order.models import sandbox_payments
from services.order.payments.sandbox import DECLINE_CARD, SandboxPayments
from tenpo.kit import migrations
from tenpo.kit.db import Database

pytestmark = pytest.mark.integration

CARD = "4242424242424242"


@pytest_asyncio.fixture
async def sandbox(database_url: str) -> AsyncIterator[SandboxPayments]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    db = Database(database_url, pool_size=20, max_overflow=0)
    try:
        yield SandboxPayments(db)
    finally:
        await db.dispose()


async def test_concurrent_authorizations_of_one_key_store_one_and_answer_alike(
    sandbox: SandboxPayments,
) -> None:
    key = f"{uuid.uuid4()}:authorize"

    answers = await asyncio.gather(
        *(sandbox.authorize(key, amount=1200, currency="JPY", card_token=CARD) for _ in range(40))
    )

    assert {(a.id, a.amount) for a in answers} == {(f"sbx_{key}", 1200)}
    assert await sandbox.state(key) == "approved"


async def test_the_same_key_for_another_amount_is_refused(sandbox: SandboxPayments) -> None:
    key = f"{uuid.uuid4()}:authorize"
    await sandbox.authorize(key, amount=1200, currency="JPY", card_token=CARD)

    with pytest.raises(PaymentDeclined) as refused:
        await sandbox.authorize(key, amount=9900, currency="JPY", card_token=CARD)

    assert refused.value.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_a_decline_is_stored_and_answered_again(sandbox: SandboxPayments) -> None:
    key = f"{uuid.uuid4()}:authorize"
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as declined:
            await sandbox.authorize(key, amount=1200, currency="JPY", card_token=DECLINE_CARD)
        assert declined.value.reason == "PAYMENT_DECLINED"
    assert await sandbox.state(key) == "declined:PAYMENT_DECLINED"


async def test_a_void_that_came_first_wins_over_a_late_authorization(
    sandbox: SandboxPayments,
) -> None:
    key = f"{uuid.uuid4()}:authorize"
    await sandbox.void(f"{key}:void", authorization_key=key)

    with pytest.raises(PaymentDeclined) as declined:
        await sandbox.authorize(key, amount=1200, currency="JPY", card_token=CARD)

    assert declined.value.reason == "AUTHORIZATION_VOIDED"
    assert await sandbox.state(key) == "voided"


async def test_an_authorization_waiting_on_a_concurrent_one_answers_the_stored_one(
    sandbox: SandboxPayments,
) -> None:
    key = f"{uuid.uuid4()}:authorize"
    async with sandbox.db.unit_of_work() as holder:
        # Another runner's authorization of the same key, not committed yet.
        await holder.session.execute(
            sa.insert(sandbox_payments).values(
                key=key, operation="authorize", amount=1200, currency="JPY", outcome="approved"
            )
        )
        racing = asyncio.ensure_future(
            sandbox.authorize(key, amount=1200, currency="JPY", card_token=CARD)
        )
        await _eventually_blocked(sandbox.db)
        await holder.commit()

    # Its statement began before that commit (so it cannot see the row): asked again.
    answer = await racing
    assert (answer.id, answer.amount) == (f"sbx_{key}", 1200)


async def _eventually_blocked(db: Database) -> None:
    """Until a statement of this database waits on a row lock (up to 30 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        async with db.autocommit() as connection:
            waiting = (
                await connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )
            ).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the authorization never waited on the uncommitted one")
