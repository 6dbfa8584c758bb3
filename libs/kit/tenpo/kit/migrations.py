"""Alembic, per service: the shared async env.py body and a programmatic upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tenpo.kit.db import KIT_METADATA


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    """A Config built in code: no alembic.ini to keep in sync per service."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # ConfigParser interpolation would trip over '%' in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["database_url"] = database_url
    return config


async def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Apply a service's migrations. Alembic's env runs its own event loop, so it gets a
    thread of its own."""
    config = alembic_config(migrations_dir, database_url)
    await asyncio.to_thread(command.upgrade, config, revision)


def create_kit_tables() -> None:
    """Create the kit's tables (outbox, inbox, idempotency keys) from their one definition;
    called by every service's first migration. A later change to them comes with its own
    helper here, called from a new migration of each service."""
    bind = op.get_bind()
    for table in KIT_METADATA.sorted_tables:
        table.create(bind)


def drop_kit_tables() -> None:
    bind = op.get_bind()
    for table in reversed(KIT_METADATA.sorted_tables):
        table.drop(bind)


#: The advisory lock key migrators of one database take turns on (each service has its own
#: database, so one constant serves them all): "tenpo-mg" as a 64-bit number.
MIGRATION_LOCK = int.from_bytes(b"tenpo-mg", "big", signed=True)


def run_env(service_metadata: sa.MetaData | Sequence[sa.MetaData]) -> None:
    """The body of every service's ``migrations/env.py``: online, async, with the kit's
    tables (outbox, inbox, idempotency keys) next to the service's own."""
    own = [service_metadata] if isinstance(service_metadata, sa.MetaData) else service_metadata
    target = [*own, KIT_METADATA]
    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL for migrations")

    def migrate(connection: Connection) -> None:
        # Several migrators at once (a rollout's init containers, pods the HPA adds) queue
        # here: Alembic takes no lock of its own, and two runs of one migration would race
        # on the same DDL (a duplicate type or table fails the loser). The lock belongs to
        # the transaction that runs the migrations, so it is released at their commit, and
        # the next migrator then reads the new head and has nothing to do.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.configure(connection=connection, target_metadata=target, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        raise RuntimeError("offline (SQL script) migrations are not supported; run them online")
    asyncio.run(run())
