"""Persistence: one async engine per service, a unit of work, and the kit's own tables."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from google.protobuf.message import Message
from opentelemetry import propagate
from opentelemetry.metrics import MeterProvider
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from tenpo.kit.metrics import BusinessCounter


def service_metadata() -> sa.MetaData:
    """A service's MetaData with the naming convention every service shares, so constraint
    and index names are predictable in migrations."""
    return sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
        }
    )


#: Tables every service carries next to its own: each service's Alembic environment includes
#: this metadata, so the tables live in the service's database and its migrations.
KIT_METADATA = sa.MetaData()

outbox_table = sa.Table(
    "outbox",
    KIT_METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    # Publishing order; identity so concurrent writers never collide.
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Index("outbox_pending", "seq", postgresql_where=sa.text("published_at IS NULL")),
)

inbox_table = sa.Table(
    "inbox",
    KIT_METADATA,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

idempotency_table = sa.Table(
    "idempotency_keys",
    KIT_METADATA,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("response", sa.LargeBinary),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)


def event_subject(message: Message, service: str | None = None) -> str:
    """``tenpo.<service>.<event_name>``: the service comes from the proto package
    (``tenpo.catalog.v1.ProductPublished`` → ``tenpo.catalog.product_published``)."""
    return subject_for(message.DESCRIPTOR.full_name, service)


def subject_for(full_name: str, service: str | None = None) -> str:
    parts = full_name.split(".")
    if service is None:
        if len(parts) < 3 or parts[0] != "tenpo":
            raise ValueError(f"cannot tell the owning service of {full_name}; pass service=")
        service = parts[1]
    return f"tenpo.{service}.{_snake(parts[-1])}"


def _snake(name: str) -> str:
    out: list[str] = []
    for i, char in enumerate(name):
        if char.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def outbox_row(message: Message, service: str | None = None) -> dict[str, Any]:
    """The outbox row of one event, carrying the current trace so that whoever consumes the
    event continues it."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return {
        "id": uuid.uuid4(),
        "subject": event_subject(message, service),
        "event_type": message.DESCRIPTOR.full_name,
        "payload": message.SerializeToString(deterministic=True),
        "headers": headers,
        "occurred_at": datetime.now(UTC),
    }


def outbox_insert(first: int = 1) -> str:
    """The outbox rows of ``outbox_arrays`` in one statement whatever their number (one
    prepared plan), taking the six arrays as ``$first`` .. ``$first+5``: a service's hot
    statement can embed it as a CTE and write its rows and its events in one round trip."""
    p = [f"${first + i}" for i in range(6)]
    return f"""
INSERT INTO outbox (id, subject, event_type, payload, headers, occurred_at)
SELECT e.id, e.subject, e.event_type, e.payload, e.headers::jsonb, e.occurred_at
FROM unnest({p[0]}::uuid[], {p[1]}::text[], {p[2]}::text[], {p[3]}::bytea[], {p[4]}::text[],
            {p[5]}::timestamptz[]) AS e(id, subject, event_type, payload, headers, occurred_at)
"""  # noqa: S608 (only parameter numbers are interpolated)


def outbox_fragment(arrays: Sequence[list[Any]], *, after: int) -> tuple[str, list[Any]]:
    """``outbox_insert`` for a CTE of a statement that has ``after`` parameters of its own,
    with the arguments to append to them: the kit numbers its own parameters, so a
    statement never hard-codes where the outbox's start. ``arrays`` are ``outbox_arrays``
    (or ``DriverUnitOfWork.take_events()``)."""
    if len(arrays) != 6:
        raise ValueError("outbox_fragment takes the six outbox_arrays")
    return _outbox_insert_after(after), list(arrays)


@functools.lru_cache(maxsize=32)
def _outbox_insert_after(after: int) -> str:
    return outbox_insert(after + 1)


def outbox_arrays(rows: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    """``outbox_row``s as the six parameter arrays of ``outbox_insert``."""
    return (
        [e["id"] for e in rows],
        [e["subject"] for e in rows],
        [e["event_type"] for e in rows],
        [e["payload"] for e in rows],
        [json.dumps(e["headers"]) for e in rows],
        [e["occurred_at"] for e in rows],
    )


OUTBOX_INSERT = outbox_insert()


class Database:
    """A service's database: engine, sessions, units of work. Built from settings at start-up,
    never at import time."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        instrument: bool = False,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pool_pre_ping: it costs a round trip per transaction (see the checkout
            # listener below for what replaces it).
            pool_recycle=1800,
            # A prepared-statement cache per connection is asyncpg's big win; keep it.
            connect_args={"server_settings": {"application_name": "tenpo"}},
        )
        # Instead of pool_pre_ping's round trip: a connection the server closed (a restart
        # ends every session) is known to asyncpg without asking, and is replaced at
        # checkout, so the first call after a restart does not fail on it.
        sa.event.listen(self.engine.sync_engine, "checkout", _replace_closed_connection)
        if instrument or meter_provider is not None:
            # SQL spans, pool usage and statement durations: worth their cost only when
            # someone collects them (an exporter is configured).
            from tenpo.kit.metrics import instrument_engine

            name = self.engine.url.database or ""
            instrument_engine(self.engine.sync_engine, name, meter_provider)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Where business counters counted by units of work go (None: the global provider).
        self.meter_provider = meter_provider
        #: Set when a unit of work commits events, so the relay publishes at once.
        self.outbox_signal = asyncio.Event()

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)

    def driver_unit_of_work(self) -> DriverUnitOfWork:
        return DriverUnitOfWork(self)

    @contextlib.asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """A pooled raw asyncpg connection outside any transaction: each statement commits
        on its own. For hot paths whose read is one statement, or whose write is one
        statement (atomic by itself): one round trip each instead of BEGIN … COMMIT."""
        async with self.engine.connect() as pooled:
            raw = await pooled.get_raw_connection()
            connection: Any = raw.driver_connection
            try:
                yield connection
            finally:
                # Never hand the pool a connection left inside a transaction the SQLAlchemy
                # adapter does not know about (its reset would not end it).
                if connection.is_in_transaction() or connection.is_closed():
                    await pooled.invalidate()

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A pooled SQLAlchemy connection outside any transaction: each statement commits
        on its own, one round trip instead of BEGIN, the statement and COMMIT. For a write
        that is one statement (atomic by itself) or a read of one statement, built with the
        same Core statements the store uses inside units of work. No events: a write that
        must publish one needs ``unit_of_work``."""
        async with self.engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def dispose(self) -> None:
        await self.engine.dispose()


def _replace_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        # The pool discards the connection and checks out (or opens) another.
        raise sa.exc.DisconnectionError("the server closed this pooled connection")


class OutboxEvents:
    """Events a unit of work writes to the outbox at commit, and business counters it adds
    once committed."""

    _events: list[dict[str, Any]]
    _counts: list[tuple[BusinessCounter, int, dict[str, str]]]
    _db: Database

    def count(self, counter: BusinessCounter, amount: int = 1, **attributes: str) -> None:
        """Add to a business counter when (and only if) this transaction commits."""
        self._counts.append((counter, amount, attributes))

    def _counted(self) -> None:
        counts, self._counts = self._counts, []
        for counter, amount, attributes in counts:
            counter.add(amount, attributes, meter_provider=self._db.meter_provider)

    def add_event(self, message: Message, *, service: str | None = None) -> uuid.UUID:
        """Queue an event; it is stored with the transaction's other writes at commit."""
        row = outbox_row(message, service)
        self._events.append(row)
        event_id: uuid.UUID = row["id"]
        return event_id

    @property
    def pending_events(self) -> Sequence[dict[str, Any]]:
        return tuple(self._events)


class UnitOfWork(OutboxEvents):
    """One transaction. Rolls back unless ``commit()`` was called; events added with
    ``add_event`` are written to the outbox in the same transaction."""

    session: AsyncSession

    def __init__(self, db: Database) -> None:
        self._db = db
        self._events: list[dict[str, Any]] = []
        self._counts = []
        self._committed = False

    async def __aenter__(self) -> Self:
        self.session = self._db.sessions()
        await self.session.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        if self._events:
            connection = await self.session.connection()
            await connection.exec_driver_sql(OUTBOX_INSERT, outbox_arrays(self._events))
        await self.session.commit()
        self._committed = True
        self._counted()
        if self._events:
            self._db.outbox_signal.set()
            self._events = []

    async def rollback(self) -> None:
        await self.session.rollback()
        self._events = []
        self._counts = []


class DriverUnitOfWork(OutboxEvents):
    """One transaction straight on the pooled asyncpg connection, for the few hot paths where
    SQLAlchemy's Python cost per statement (a few hundred microseconds: statement caching,
    result wrapping, greenlet hops) is what limits throughput. The contract is
    ``UnitOfWork``'s: it rolls back unless ``commit()`` was called, and events added with
    ``add_event`` are written to the outbox in the same transaction. Statements use asyncpg's
    ``$n`` parameters on ``connection``."""

    connection: Any  # asyncpg.Connection; asyncpg ships no type hints

    def __init__(self, db: Database) -> None:
        self._db = db
        self._events: list[dict[str, Any]] = []
        self._counts = []
        self._taken = False
        self._committed = False
        self._pooled: AsyncConnection | None = None
        self._transaction: Any = None

    async def __aenter__(self) -> Self:
        # A connection that died after checkout (its server restarted a moment ago) fails
        # BEGIN before anything was done: take another one, once.
        for retry in (True, False):
            self.connection = None
            self._pooled = await self._db.engine.connect()
            try:
                raw = await self._pooled.get_raw_connection()
                self.connection = raw.driver_connection
                self._transaction = self.connection.transaction()
                await self._transaction.start()
                return self
            except Exception:
                dead = self.connection is not None and self.connection.is_closed()
                await self._pooled.invalidate()
                await self._pooled.close()
                if not (retry and dead):
                    raise
            except BaseException:
                await self._pooled.invalidate()
                await self._pooled.close()
                raise
        raise AssertionError("unreachable")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._pooled is not None
        broken = False
        try:
            if not self._committed:
                await self._transaction.rollback()
        except BaseException:
            broken = True
            raise
        finally:
            # The pool must never hand out a connection still inside our transaction (the
            # SQLAlchemy adapter does not know about it, so its reset would not end it).
            if broken or self.connection.is_in_transaction():
                await self._pooled.invalidate()
            await self._pooled.close()

    def take_events(self) -> tuple[list[Any], ...]:
        """The queued events as ``outbox_insert``'s six arrays, for a statement of the
        caller's that writes them itself; the relay is still woken at commit."""
        arrays = outbox_arrays(self._events)
        self._taken = self._taken or bool(self._events)
        self._events = []
        return arrays

    async def commit(self) -> None:
        if self._events:
            await self.connection.execute(OUTBOX_INSERT, *outbox_arrays(self._events))
        await self._transaction.commit()
        self._committed = True
        self._counted()
        if self._events or self._taken:
            self._db.outbox_signal.set()
            self._events = []
