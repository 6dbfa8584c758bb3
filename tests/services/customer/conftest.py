"""Customer test fixtures: a migrated, running customer service per module, stubs, helpers."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa

from services.customer.app import definition
from services.customer.config import CustomerSettings
from tenpo.customer.v1 import (
    customer_service_pb2_grpc,
    events_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    resources_pb2,
)
from tenpo.kit import migrations
from tenpo.kit.db import Database, outbox_table
from tenpo.kit.devkeys import DevKeys
from tenpo.kit.devstack import drop_database, ensure_database
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import auth_settings, gateway_channel

PASSWORD = "correct horse battery"

#: Cheap argon2id (still argon2id): the tests hash hundreds of passwords.
FAST_ARGON2: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 64,
    "argon2_parallelism": 1,
}


def customer_settings(
    database_url: str, nats_url: str, dev_keys: DevKeys, **overrides: Any
) -> CustomerSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "grpc_port": 0,
        "environment": "test",
        "signing_key_files": [Path(dev_keys.private_key_path)],
        "lockout_threshold": 3,
        "lockout_base_seconds": 1.0,
        **FAST_ARGON2,
        **auth_settings(dev_keys),
        **overrides,
    }
    return CustomerSettings(**values)


@dataclass
class Service:
    host: ServiceHost[CustomerSettings]
    identity: identity_service_pb2_grpc.IdentityServiceStub
    customers: customer_service_pb2_grpc.CustomerServiceStub
    db: Database

    async def register(
        self, prefix: str = "user", **fields: Any
    ) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """A new customer: (id, email, auth metadata)."""
        email = fields.pop("email", f"{prefix}.{uuid.uuid4().hex[:10]}@example.jp")
        response = await self.identity.Register(
            identity_service_pb2.RegisterRequest(
                email=email,
                password=fields.pop("password", PASSWORD),
                name=fields.pop(
                    "name",
                    resources_pb2.PersonName(
                        family_name="山田",
                        given_name="花子",
                        family_name_kana="ヤマダ",
                        given_name_kana="ハナコ",
                    ),
                ),
                locale="ja-JP",
            ),
            metadata=gateway_channel("APP"),
        )
        return response.customer.id, email, bearer(response.tokens.access_token)

    async def events(self, message_type: type[Any], customer_id: str | None = None) -> list[Any]:
        """Events of one type in the outbox (published or not), oldest first."""
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(outbox_table.c.payload)
                .where(outbox_table.c.event_type == message_type.DESCRIPTOR.full_name)
                .order_by(outbox_table.c.seq)
            )
            found = [message_type.FromString(row.payload) for row in rows]
        if customer_id is None:
            return found
        return [e for e in found if _customer_of(e) == customer_id]


def _customer_of(event: Any) -> str:
    if hasattr(event, "customer_id"):
        return str(event.customer_id)
    return str(event.customer.id)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, (caught.value.code(), caught.value.details())
    details = decode_error(caught.value)
    if reason is not None:
        assert details.reason == reason, details
    return details


@pytest_asyncio.fixture(scope="module")
async def service_factory(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[Callable[..., Any]]:
    """Starts customer services on fresh databases (torn down with the module)."""
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        names: list[str] = []

        async def start(**overrides: Any) -> Service:
            name = f"test_cust_{uuid.uuid4().hex[:12]}"
            names.append(name)
            url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
            await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
            settings = customer_settings(url, nats_url, dev_keys, **overrides)
            host = await stack.enter_async_context(running(definition, settings))
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
            )
            db = Database(url, pool_size=2, max_overflow=2)
            stack.push_async_callback(db.dispose)
            return Service(
                host,
                identity_service_pb2_grpc.IdentityServiceStub(channel),
                customer_service_pb2_grpc.CustomerServiceStub(channel),
                db,
            )

        try:
            yield start
        finally:
            await stack.aclose()
            for name in names:
                drop_database(postgres_admin_url, name)


@pytest_asyncio.fixture(scope="module")
async def service(service_factory: Callable[..., Any]) -> Service:
    return await service_factory()  # type: ignore[no-any-return]


__all__ = ["PASSWORD", "Service", "bearer", "events_pb2", "expect_error"]
