"""The database under faults: a PostgreSQL restart costs no call, an outage is UNAVAILABLE.

Each test runs its own embedded PostgreSQL, which it stops and starts (the session's server
is shared by every other test)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf import empty_pb2, wrappers_pb2
from sqlalchemy.ext.asyncio import create_async_engine

from tenpo.devtools.stack import EmbeddedPostgres, free_port
from tenpo.kit.db import KIT_METADATA, Database
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tests.conftest import scratch_dir
from tests.kit.sample_service import SERVICE, SampleSettings, definition, sample_metadata

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[EmbeddedPostgres]:
    with scratch_dir("tenpo-test-pg-faults-") as root:
        server = EmbeddedPostgres(root / "data", free_port(), durable=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest_asyncio.fixture
async def sample_on_private_db(
    private_postgres: EmbeddedPostgres,
) -> AsyncIterator[tuple[ServiceHost[SampleSettings], str]]:
    if not private_postgres.is_running():
        private_postgres.start()
    url = private_postgres.ensure_database(
        f"faults_{secrets.token_hex(6)}", secrets.token_urlsafe(18)
    )
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(sample_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)
    await engine.dispose()
    settings = SampleSettings(service_name="sample", database_url=url)
    async with running(dataclasses.replace(definition, uses_database=True), settings) as host:
        yield host, url


async def _count(channel: grpc.aio.Channel, method: str) -> int:
    call = channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=wrappers_pb2.Int64Value.FromString,
    )
    response: Any = await call(empty_pb2.Empty(), timeout=20)
    return int(response.value)


METHODS = ("CountNotes", "CountNotesDriver")  # SQLAlchemy session; raw asyncpg connection


async def test_the_first_calls_after_a_postgres_restart_succeed(
    private_postgres: EmbeddedPostgres,
    sample_on_private_db: tuple[ServiceHost[SampleSettings], str],
) -> None:
    host, _ = sample_on_private_db
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        # Several connections in the pool, all of which the restart kills.
        for method in METHODS:
            assert await asyncio.gather(*(_count(channel, method) for _ in range(4))) == [0] * 4
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.to_thread(private_postgres.start)
        for method in METHODS:
            assert await asyncio.gather(*(_count(channel, method) for _ in range(4))) == [0] * 4


async def test_a_database_outage_is_unavailable_and_passes(
    private_postgres: EmbeddedPostgres,
    sample_on_private_db: tuple[ServiceHost[SampleSettings], str],
) -> None:
    host, _ = sample_on_private_db
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        for method in METHODS:
            assert await _count(channel, method) == 0
        await asyncio.to_thread(private_postgres.stop)
        try:
            for method in METHODS:
                for _ in range(3):  # pooled connections first, then new ones refused
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await _count(channel, method)
                    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, (
                        caught.value.details()
                    )
                    assert decode_error(caught.value).reason == "DATABASE_UNAVAILABLE"
        finally:
            await asyncio.to_thread(private_postgres.start)
        for method in METHODS:
            assert await _count(channel, method) == 0


async def test_a_dead_connection_is_replaced_at_checkout_without_a_round_trip(
    private_postgres: EmbeddedPostgres,
    sample_on_private_db: tuple[ServiceHost[SampleSettings], str],
) -> None:
    _, url = sample_on_private_db
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.driver_unit_of_work() as uow:
            first = await uow.connection.fetchval("SELECT pg_backend_pid()")
            # Ended by the server, as a restart ends every session.
            await uow.connection.execute("SELECT 1")
        admin = await asyncpg.connect(private_postgres.admin_url())
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # let the event loop read the server's goodbye
        async with db.driver_unit_of_work() as uow:
            second = await uow.connection.fetchval("SELECT pg_backend_pid()")
        async with db.unit_of_work() as uow:
            assert (await uow.session.connection()) is not None
    finally:
        await db.dispose()
    assert second != first


async def test_autocommit_commits_each_statement_on_its_own(database_url: str) -> None:
    # A fresh database per test (the fixture), so a plain table name. One pooled
    # connection: the unit of work below gets the very one autocommit used.
    db = Database(database_url, pool_size=1, max_overflow=0)
    other = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.autocommit() as connection:
            await connection.execute(sa.text("CREATE TABLE notes (id text PRIMARY KEY)"))
            await connection.execute(sa.text("INSERT INTO notes VALUES ('a')"))
            # Each statement is a transaction of its own ...
            first = (await connection.execute(sa.text("SELECT txid_current()"))).scalar()
            second = (await connection.execute(sa.text("SELECT txid_current()"))).scalar()
            assert first != second
            # ... committed as it returns: another session sees the row at once.
            async with other.autocommit() as looking:
                seen = await looking.execute(sa.text("SELECT id FROM notes"))
                assert seen.scalars().all() == ["a"]
        # The connection went back to the pool transactional again: a unit of work on it
        # that does not commit leaves nothing.
        async with db.unit_of_work() as uow:
            await uow.session.execute(sa.text("INSERT INTO notes VALUES ('b')"))
        async with other.autocommit() as looking:
            seen = await looking.execute(sa.text("SELECT id FROM notes"))
            assert seen.scalars().all() == ["a"]
    finally:
        await db.dispose()
        await other.dispose()
