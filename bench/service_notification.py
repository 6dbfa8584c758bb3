"""Notification benchmark: latency from an event published on NATS to the SMTP server
accepting the mail it causes, at steady rates below saturation; p50/p99.

The order service does not exist yet, so the event is the customer service's
ConsentChanged (whose consumer exists on every contract), triggering a journey whose one
step sends a transactional mail — the same path an OrderPlaced confirmation takes: the
consumer's transaction starts a run, the journey runner composes the message under the
rules, the sender hands it to SMTP. The service runs in process with an in-memory customer
directory (no customer service), the SMTP server is the devtools mail catcher."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import secrets
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Measurement, Report, free_port
from services.notification.app import build, definition
from services.notification.config import NotificationSettings
from services.notification.customers import Contact, MailToken
from services.notification.domain import journeys as jd
from services.notification.domain.templates import Category, Channel, Template
from services.notification.providers.push import PushSink
from services.notification.providers.sms import SmsSink
from services.notification.providers.smtp import SmtpSender
from services.notification.seed import seed_defaults
from services.notification.store import JourneyStore, TemplateStore
from services.notification.usecases.messages import Providers
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.customer.v1 import resources_pb2 as customer_pb
from tenpo.devtools.keys import ensure_dev_keys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres
from tenpo.kit import migrations
from tenpo.kit.db import Database, event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.kit.server import running

#: Events per second; both well below what one process sustains.
RATES = (10, 40)
TRIGGER = "tenpo.customer.v1.ConsentChanged"


@dataclasses.dataclass
class Directory:
    contacts: dict[str, Contact] = dataclasses.field(default_factory=dict)

    async def contact(self, customer_id: str) -> Contact | None:
        return self.contacts.get(customer_id)

    async def mail_token(self, token_id: str) -> MailToken | None:
        return None


async def _prepare(url: str) -> None:
    await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        await seed_defaults(db, timedelta(hours=24))
        async with db.unit_of_work() as uow:
            await TemplateStore(uow.session).insert(
                Template(
                    "bench_order",
                    Channel.EMAIL,
                    "ja",
                    Category.TRANSACTIONAL,
                    subject="ご注文ありがとうございます",
                    text_body="{{ name }}様、ご注文を承りました。",
                    html_body="<p>{{ name }}様、ご注文を承りました。</p>",
                )
            )
            await JourneyStore(uow.session).insert(
                jd.Journey(
                    display_name="Bench order confirmation",
                    trigger_event=TRIGGER,
                    steps=(jd.Step("mail", jd.Send("bench_order", Channel.EMAIL)),),
                )
            )
            await uow.commit()
    finally:
        await db.dispose()


async def run(report: Report, duration: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenpo-bench-notification-"))
    try:
        await _run(report, duration, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _run(report: Report, duration: float, root: Path) -> None:
    catcher = MailCatcher(port=free_port())
    catcher.start()
    try:
        with (
            EmbeddedPostgres(root / "pg", free_port(), durable=True) as postgres,
            EmbeddedNats(root / "nats", free_port()) as nats,
        ):
            url = postgres.ensure_database("notification", secrets.token_urlsafe(12))
            await _prepare(url)
            keys = ensure_dev_keys(root / "keys")
            directory = Directory()
            settings = NotificationSettings(
                database_url=url,
                nats_url=nats.url,
                grpc_port=0,
                smtp_port=catcher.port,
                quiet_hours_start="00:00",
                quiet_hours_end="00:00",
                log_level="WARNING",
                auth_jwks_file=keys.jwks_path,
            )
            providers = Providers(
                email=SmtpSender(host="127.0.0.1", port=catcher.port, sender=settings.mail_from),
                sms=SmsSink(),
                push=PushSink(),
            )
            service = dataclasses.replace(
                definition,
                build=functools.partial(build, directory=directory, channel_providers=providers),
            )
            bus = EventBus(nats.url, name="bench-customer")
            await bus.connect()
            await bus.ensure_stream("customer")
            try:
                async with running(service, settings):
                    # Warm-up: connections, prepared statements, the consumer's creation.
                    await _load(bus, directory, catcher, rate=5, duration=1.0)
                    for rate in RATES:
                        latencies, lost = await _load(
                            bus, directory, catcher, rate=rate, duration=duration
                        )
                        measured = report.add(
                            Measurement(
                                f"notification event→SMTP accepted @{rate}/s",
                                calls=len(latencies),
                                errors=lost,
                                seconds=duration,
                                concurrency=rate,
                                latencies_ms=latencies,
                            )
                        )
                        report.note(
                            f"notification @{rate}/s: p50 {measured.percentile(50):.1f} ms, "
                            f"p99 {measured.percentile(99):.1f} ms (goal p99 <= 50 ms), "
                            f"{lost} not delivered"
                        )
                        # The machine's load says how far to trust the numbers.
                        report.note(f"load average during the run: {os.getloadavg()[0]:.1f}")
            finally:
                await bus.close()
    finally:
        catcher.stop()


async def _load(
    bus: EventBus, directory: Directory, catcher: MailCatcher, *, rate: float, duration: float
) -> tuple[list[float], int]:
    """Publish ``rate`` events a second for ``duration`` seconds (open loop: the schedule does
    not wait for deliveries), then wait for their mails."""
    published: dict[str, float] = {}
    interval = 1 / rate
    start = time.monotonic()
    for i in range(int(rate * duration)):
        due = start + i * interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        customer = str(uuid.uuid4())
        address = f"{customer[:12]}@bench.example"
        directory.contacts[customer] = Contact(customer, address, "", "ja-JP", "花子")
        message = customer_events.ConsentChanged(
            customer_id=customer,
            consent=customer_pb.ConsentState(
                purpose=customer_pb.CONSENT_PURPOSE_MARKETING,
                channel=customer_pb.CONSENT_CHANNEL_EMAIL,
                status=customer_pb.CONSENT_STATUS_GRANTED,
            ),
        )
        event_id = str(uuid.uuid4())
        published[address] = time.monotonic()
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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(catcher.to(a) for a in published):
            break
        await asyncio.sleep(0.05)
    latencies = [
        (catcher.to(a)[0].received_at - sent) * 1000
        for a, sent in published.items()
        if catcher.to(a)
    ]
    return latencies, len(published) - len(latencies)
