"""Password reset requests cost the same for a registered and an unknown address (the answer
only queues the request), and the queue is handled once per request by concurrent handlers.
Proven by the work done (SQL statements, commits, password hashing), never by timing."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from services.customer import domain as d
from services.customer.models import password_reset_requests
from services.customer.usecases.bundle import CustomerUseCases, build_use_cases
from tenpo.customer.v1 import events_pb2
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit import migrations
from tenpo.kit.db import Database, outbox_table
from tests.services.customer.conftest import PASSWORD, customer_settings


@pytest_asyncio.fixture
async def cases(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[CustomerUseCases]:
    """The use cases on a fresh database with no service running: no background handler
    touches the queue except the ones a test starts."""
    from services.customer.app import definition

    name = f"test_mail_{uuid.uuid4().hex[:12]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
    db = Database(url, pool_size=4, max_overflow=4)
    try:
        yield build_use_cases(customer_settings(url, nats_url, dev_keys), db)
    finally:
        await db.dispose()
        drop_database(postgres_admin_url, name)


async def _register(cases: CustomerUseCases) -> d.Customer:
    customer, _ = await cases.sessions.register(
        email=f"reset.{uuid.uuid4().hex[:10]}@example.jp",
        password=PASSWORD,
        name=d.PersonName("山田", "花子", "ヤマダ", "ハナコ"),
        locale="ja-JP",
        channel=d.CHANNEL_WEB,
    )
    return customer


class Work:
    """What a piece of code makes the database and the password hasher do."""

    def __init__(self, cases: CustomerUseCases, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        self.commits = 0
        self.hashing = 0
        engine = cases.context.db.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)
        passwords = cases.context.passwords
        for method in ("hash", "verify"):
            original = getattr(passwords, method)

            async def counted(*args: Any, _original: Any = original) -> Any:
                self.hashing += 1
                return await _original(*args)

            monkeypatch.setattr(passwords, method, counted)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def take(self) -> tuple[list[str], int, int]:
        done = (self.statements, self.commits, self.hashing)
        self.statements, self.commits, self.hashing = [], 0, 0
        return done


async def test_a_reset_request_does_the_same_work_for_known_and_unknown_addresses(
    cases: CustomerUseCases, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = await _register(cases)
    assert customer.email is not None
    work = Work(cases, monkeypatch)

    await cases.mail.request_password_reset(customer.email)
    known = work.take()
    await cases.mail.request_password_reset("nobody.here@example.jp")
    unknown = work.take()

    assert known == unknown
    statements, commits, hashing = known
    # One insert into the queue and one commit: nothing looks the address up or hashes.
    assert [s.split()[0:3] for s in statements] == [["INSERT", "INTO", "password_reset_requests"]]
    assert commits == 1 and hashing == 0
    assert not any("customers" in s for s in statements)

    # Afterwards (in the background) the known address gets a token and the unknown none.
    assert await cases.mail.handle_reset_requests() == 2
    events = await _events(cases, events_pb2.PasswordResetRequested)
    assert [e.customer_id for e in events] == [str(customer.id)]


async def test_concurrent_handlers_handle_each_request_once(cases: CustomerUseCases) -> None:
    customers = [await _register(cases) for _ in range(6)]
    for customer in customers:
        assert customer.email is not None
        await cases.mail.request_password_reset(customer.email)
        await cases.mail.request_password_reset(f"ghost.{uuid.uuid4().hex[:8]}@example.jp")

    handled = await asyncio.gather(*(cases.mail.handle_reset_requests() for _ in range(4)))

    assert sum(handled) == 12  # a request claimed twice would count twice
    async with cases.context.db.engine.connect() as conn:
        left = await conn.execute(sa.select(sa.func.count()).select_from(password_reset_requests))
        assert left.scalar_one() == 0
    events = await _events(cases, events_pb2.PasswordResetRequested)
    assert sorted(e.customer_id for e in events) == sorted(str(c.id) for c in customers)


async def _events(cases: CustomerUseCases, message_type: type[Any]) -> list[Any]:
    async with cases.context.db.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox_table.c.payload)
            .where(outbox_table.c.event_type == message_type.DESCRIPTOR.full_name)
            .order_by(outbox_table.c.seq)
        )
        return [message_type.FromString(row.payload) for row in rows]


async def test_a_request_that_fails_is_dropped_without_blocking_the_queue(
    cases: CustomerUseCases, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = await _register(cases), await _register(cases)
    assert first.email is not None and second.email is not None
    await cases.mail.request_password_reset(first.email)
    await cases.mail.request_password_reset(second.email)
    original = cases.mail._mail_reset
    calls: list[str] = []

    async def failing_once(uow: Any, email_key: str) -> Any:
        calls.append(email_key)
        if len(calls) == 1:
            # Written, then failed: the savepoint takes the token row back, no event goes.
            await original(uow, email_key)
            raise RuntimeError(f"boom for {email_key}")
        return await original(uow, email_key)

    monkeypatch.setattr(cases.mail, "_mail_reset", failing_once)
    assert await cases.mail.handle_reset_requests() == 2
    events = await _events(cases, events_pb2.PasswordResetRequested)
    assert [e.customer_id for e in events] == [str(second.id)]
    async with cases.context.db.engine.connect() as conn:
        tokens = await conn.execute(
            sa.text("SELECT customer_id FROM one_time_tokens WHERE purpose = :p"),
            {"p": int(d.TokenPurpose.RESET_PASSWORD)},
        )
        assert [row.customer_id for row in tokens] == [second.id]
    assert "password reset request dropped" in caplog.text
    assert first.email.lower() not in caplog.text.lower()  # no address in the log
