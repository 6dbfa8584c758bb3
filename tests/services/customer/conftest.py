"""Customer test fixtures: a migrated, running customer service per module, stubs, helpers."""

from __future__ import annotations

import asyncio
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
from services.customer.models import password_reset_requests
from tenpo.customer.v1 import (
    customer_service_pb2_grpc,
    events_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    resources_pb2,
)
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit import migrations
from tenpo.kit.db import Database, outbox_table
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tests.services.conftest import Tokens, auth_settings, gateway_channel

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
    tokens: Tokens

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

    async def mailed(self, event: Any) -> identity_service_pb2.IssueMailTokenResponse:
        """What the mailer gets for a mail-announcing event: the secret and the address."""
        mailer = self.tokens.mint(subject="notification", kind="service", scopes=["mail:send"])
        return await self.identity.IssueMailToken(  # type: ignore[no-any-return]
            identity_service_pb2.IssueMailTokenRequest(token_id=event.token_id),
            metadata=bearer(mailer),
        )

    async def mailed_token(self, event: Any) -> str:
        return (await self.mailed(event)).token

    async def reset_requests_handled(self) -> None:
        """Wait until the background handler has turned every queued password reset
        request into a mailed token (or nothing)."""
        for _ in range(400):
            async with self.db.engine.connect() as conn:
                pending = await conn.execute(
                    sa.select(sa.func.count()).select_from(password_reset_requests)
                )
                if pending.scalar_one() == 0:
                    return
            await asyncio.sleep(0.025)
        raise AssertionError("password reset requests were not handled")

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
    return str(event.customer_id)


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


#: The locations the stand-in inventory knows: its demo stores and a distribution centre.
KNOWN_LOCATIONS = {
    "tokyo-shibuya": inventory_pb.LOCATION_TYPE_STORE,
    "tokyo-shinjuku": inventory_pb.LOCATION_TYPE_STORE,
    "tokyo-ginza": inventory_pb.LOCATION_TYPE_STORE,
    "osaka-umeda": inventory_pb.LOCATION_TYPE_STORE,
    "dc-kanto": inventory_pb.LOCATION_TYPE_DISTRIBUTION_CENTER,
}
#: A location the stand-in answers only after a long pause (past any test's deadline).
SLOW_LOCATION = "tokyo-slow"


class StandInInventory(inventory_grpc.InventoryServiceServicer):
    """A real gRPC server with inventory's contract, answering GetLocation from
    KNOWN_LOCATIONS: the customer service's client code runs for real (deadline, status
    codes) without an inventory database."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.stalled = asyncio.Event()

    async def GetLocation(
        self, request: inventory_api.GetLocationRequest, context: grpc.aio.ServicerContext
    ) -> inventory_api.GetLocationResponse:
        self.asked.append(request.id)
        if request.id == SLOW_LOCATION:
            self.stalled.set()
            await asyncio.sleep(30)
        if request.id not in KNOWN_LOCATIONS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no location {request.id!r}")
        return inventory_api.GetLocationResponse(
            location=inventory_pb.Location(id=request.id, type=KNOWN_LOCATIONS[request.id])
        )


@dataclass
class Inventory:
    target: str
    servicer: StandInInventory


@pytest_asyncio.fixture(scope="module")
async def inventory() -> AsyncIterator[Inventory]:
    server = grpc.aio.server()
    servicer = StandInInventory()
    inventory_grpc.add_InventoryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Inventory(f"127.0.0.1:{port}", servicer)
    finally:
        await server.stop(grace=None)


@pytest_asyncio.fixture(scope="module")
async def service_factory(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys, inventory: Inventory
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
            overrides.setdefault("inventory_target", inventory.target)
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
                Tokens(dev_keys),
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
