"""Notification test fixtures: a migrated, seeded, running notification service on the
session's PostgreSQL and NATS, a real SMTP catcher, a fake customer directory, recording
SMS and push providers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import Message

from services.notification.app import build, definition
from services.notification.config import NotificationSettings
from services.notification.customers import Contact, MailToken
from services.notification.providers.push import PushSink
from services.notification.providers.smtp import SmtpSender
from services.notification.seed import seed_defaults
from services.notification.usecases.messages import Providers
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack.net import free_port
from tenpo.kit import migrations
from tenpo.kit.db import Database, event_subject
from tenpo.kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    OCCURRED_AT_HEADER,
    EventBus,
    stream_name,
)
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tenpo.notification.v1 import notification_service_pb2_grpc
from tests.services.conftest import Tokens, auth_settings

Stub = notification_service_pb2_grpc.NotificationServiceStub
#: The test variant of the welcome journey's 24 hours.
REMINDER_AFTER = timedelta(seconds=2)


@dataclass
class FakeDirectory:
    """The customer service as the notification service sees it."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    tokens: dict[str, MailToken] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    down: bool = False

    def add(self, *, email: str = "", phone: str = "", locale: str = "ja-JP") -> str:
        customer_id = str(uuid.uuid4())
        self.contacts[customer_id] = Contact(
            customer_id, email or f"{customer_id[:8]}@example.jp", phone, locale, "花子"
        )
        return customer_id

    async def contact(self, customer_id: str) -> Contact | None:
        if self.down:
            from tenpo.kit.errors import Unavailable

            raise Unavailable("down", reason="CUSTOMER_UNAVAILABLE")
        return self.contacts.get(customer_id)

    async def mail_token(self, token_id: str) -> MailToken | None:
        self.issued.append(token_id)
        return self.tokens.get(token_id)


@dataclass
class RecordingSms:
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, to: str, text: str) -> str:
        self.sent.append((to, text))
        return f"sms-{len(self.sent)}"


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    server = MailCatcher(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@dataclass
class Harness:
    database_url: str
    nats_url: str
    dev_keys: DevKeys
    catcher: MailCatcher
    directory: FakeDirectory
    sms: RecordingSms
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Replaces the SMTP sender (to look inside the provider call).
    email: Any = None

    def settings(self, **overrides: Any) -> NotificationSettings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "nats_url": self.nats_url,
            "grpc_port": 0,
            "smtp_port": self.catcher.port,
            "customer_consumer": f"notification-test-{uuid.uuid4().hex[:8]}",
            "delivery_poll_seconds": 0.2,
            "journey_poll_seconds": 0.2,
            # No quiet hours unless a test sets them: the tests run at any hour.
            "quiet_hours_start": "00:00",
            "quiet_hours_end": "00:00",
            "public_base_url": "https://shop.test",
            "shutdown_grace_seconds": 1.0,
            **auth_settings(self.dev_keys),
        }
        return NotificationSettings(**(values | self.overrides | overrides))

    def definition(self) -> Any:
        settings = self.settings()
        email = self.email or SmtpSender(
            host="127.0.0.1", port=self.catcher.port, sender=settings.mail_from
        )
        providers = Providers(email=email, sms=self.sms, push=PushSink())
        return dataclasses.replace(
            definition,
            build=functools.partial(build, directory=self.directory, channel_providers=providers),
        )

    @contextlib.asynccontextmanager
    async def start(
        self, **overrides: Any
    ) -> AsyncIterator[tuple[ServiceHost[NotificationSettings], Stub]]:
        async with (
            running(self.definition(), self.settings(**overrides)) as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            yield host, Stub(channel)


async def prepare_database(database_url: str, **seed_options: Any) -> None:
    """Migrated and seeded; the welcome journey issues no code unless ``seed_options`` name
    its promotion (most tests have no cart service)."""
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        await seed_defaults(db, REMINDER_AFTER, **seed_options)
    finally:
        await db.dispose()


@pytest_asyncio.fixture
async def harness(
    database_url: str,
    nats_url: str,
    dev_keys: DevKeys,
    catcher: MailCatcher,
    directory: FakeDirectory,
    sms: RecordingSms,
) -> Harness:
    await prepare_database(database_url)
    return Harness(database_url, nats_url, dev_keys, catcher, directory, sms)


@pytest_asyncio.fixture
async def service(
    harness: Harness,
) -> AsyncIterator[tuple[ServiceHost[NotificationSettings], Stub]]:
    async with harness.start() as running_service:
        yield running_service


def staff(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    return tokens.metadata(
        tokens.mint(
            subject="staff-crm-1",
            kind="staff",
            scopes=["notifications:read", "notifications:write", "notifications:send"],
        )
    )


def service_caller(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    return tokens.metadata(
        tokens.mint(subject="order-service", kind="service", scopes=["notifications:send"])
    )


async def eventually(check: Callable[[], Awaitable[None]], timeout: float = 15.0) -> None:
    """Retry ``check`` until it stops failing (never asserts how long it took)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await check()
            return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def expect_error(call: Any, code: grpc.StatusCode, reason: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    if reason is not None:
        assert decode_error(caught.value).reason == reason


@pytest_asyncio.fixture
async def customer_bus(nats_url: str) -> AsyncIterator[EventBus]:
    bus = EventBus(nats_url, name="test-customer")
    await bus.connect()
    await bus.ensure_stream("customer")
    try:
        yield bus
    finally:
        await bus.close()


async def publish(bus: EventBus, message: Message) -> None:
    """As the customer service's outbox relay would."""
    event_id = str(uuid.uuid4())
    await bus.publish(
        event_subject(message),
        message.SerializeToString(),
        {
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
            OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
        },
        msg_id=event_id,
    )


@pytest_asyncio.fixture
async def buses(nats_url: str) -> AsyncIterator[dict[str, EventBus]]:
    out = {}
    for service in ("cart", "order"):
        bus = EventBus(nats_url, name=f"test-{service}")
        await bus.connect()
        await bus.ensure_stream(service)
        # A test's consumers read the stream from its start: events an earlier test on this
        # worker published (other customers, other carts) must not reach them.
        await bus.js.purge_stream(stream_name(service))
        out[service] = bus
    try:
        yield out
    finally:
        for bus in out.values():
            await bus.close()


_Fake = TypeVar("_Fake")


@contextlib.asynccontextmanager
async def fake_server(
    port: int, fake: _Fake, *adders: Callable[[_Fake, grpc.aio.Server], None]
) -> AsyncIterator[_Fake]:
    """``fake`` serving the services its ``adders`` register, on ``port``, for the test's
    length: the notification service's upstreams (cart, order, catalog, customer)."""
    server = grpc.aio.server()
    for add in adders:
        add(fake, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield fake
    finally:
        await server.stop(None)
