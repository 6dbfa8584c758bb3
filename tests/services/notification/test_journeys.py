"""The welcome journey with its two-second variant of "24 hours": the welcome mail over real
SMTP, then an SMS reminder only when the mail stays unopened; durable timers survive a
restart and two replicas advance each run once."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import NotificationSettings
from services.notification.domain.templates import Channel
from services.notification.store import JourneyStore
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.events import EventBus
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tests.services.notification.conftest import Harness, Stub, eventually, publish

REGISTERED = "tenpo.customer.v1.CustomerRegistered"
MARKETING, GRANTED = 1, 3


async def register(host: ServiceHost[NotificationSettings], customer_id: str) -> None:
    """What the consumer of CustomerRegistered does (subscribers/mail_tokens.py)."""
    assert host.runtime is not None
    journeys = host.runtime.parts["journeys"]
    async with host.runtime.db.unit_of_work() as uow:
        await journeys.on_event(uow, REGISTERED, uuid.UUID(customer_id), str(uuid.uuid4()), None)
        await uow.commit()
    journeys.due.set()


async def grant_sms(host: ServiceHost[NotificationSettings], customer_id: str) -> None:
    assert host.runtime is not None
    recipients = host.runtime.parts["recipients"]
    async with host.runtime.db.unit_of_work() as uow:
        await recipients.consent_changed(
            uow, uuid.UUID(customer_id), MARKETING, int(Channel.SMS), GRANTED, datetime.now(UTC)
        )
        await uow.commit()


async def run_status(host: ServiceHost[NotificationSettings], customer_id: str) -> str:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        return str(
            (
                await uow.session.execute(
                    sa.select(m.journey_runs.c.status).where(
                        m.journey_runs.c.customer_id == uuid.UUID(customer_id)
                    )
                )
            ).scalar_one()
        )


def pixel_token(html: str) -> str:
    found = re.search(r"/v1/t/o/([A-Za-z0-9_-]+)", html)
    assert found, html
    return found.group(1)


async def test_unopened_welcome_mail_gets_an_sms_reminder(
    harness: Harness, service: tuple[ServiceHost[NotificationSettings], Stub]
) -> None:
    host, _ = service
    customer = harness.directory.add(phone="+819011112222")
    await grant_sms(host, customer)
    await register(host, customer)
    address = harness.directory.contacts[customer].email

    async def mailed() -> None:
        assert len(harness.catcher.to(address)) == 1

    await eventually(mailed)
    mail = harness.catcher.to(address)[0].parsed()
    assert mail["Subject"] == "花子、Tenpoへようこそ"

    async def reminded() -> None:
        assert harness.sms.sent == [
            # No welcome promotion in this seed: no code, and the SMS claims none.
            ("+819011112222", "Tenpo: ようこそメールをお送りしました。メールをご確認ください。")
        ]

    await eventually(reminded)
    await eventually(lambda: _expect_status(host, customer, "completed"))


async def _expect_status(
    host: ServiceHost[NotificationSettings], customer: str, status: str
) -> None:
    assert await run_status(host, customer) == status


async def test_opened_welcome_mail_ends_the_journey_without_sms(
    harness: Harness, service: tuple[ServiceHost[NotificationSettings], Stub]
) -> None:
    host, stub = service
    customer = harness.directory.add(phone="+819033334444")
    await grant_sms(host, customer)
    await register(host, customer)
    address = harness.directory.contacts[customer].email

    async def mailed() -> None:
        assert harness.catcher.to(address)

    await eventually(mailed)
    html = harness.catcher.to(address)[0].parsed().get_body(("html",))
    assert html is not None
    # The mail client loads the pixel, anonymously.
    await stub.TrackOpen(api.TrackOpenRequest(token=pixel_token(html.get_content())))
    # The wait wakes at the open, the branch sees it and leaves: the journey is over
    # before its timer would have sent the reminder.
    await eventually(lambda: _expect_status(host, customer, "completed"))
    assert harness.sms.sent == []


async def test_a_journey_timer_survives_a_restart(harness: Harness) -> None:
    customer = harness.directory.add(phone="+819055556666")
    address = harness.directory.contacts[customer].email
    # The wait starts in the first process, which stops before it is due.
    async with harness.start() as (first, _):
        await grant_sms(first, customer)
        await register(first, customer)

        async def waiting() -> None:
            assert harness.catcher.to(address)
            assert first.runtime is not None
            async with first.runtime.db.unit_of_work() as uow:
                row = (
                    await uow.session.execute(
                        sa.select(m.journey_runs.c.waiting).where(
                            m.journey_runs.c.customer_id == uuid.UUID(customer)
                        )
                    )
                ).scalar_one()
            assert row is True

        await eventually(waiting)
        assert harness.sms.sent == []
    # A new process (any replica) finds the durable timer and fires it.
    async with harness.start() as (second, _):

        async def reminded() -> None:
            assert [to for to, _ in harness.sms.sent] == ["+819055556666"]

        await eventually(reminded)
        await eventually(lambda: _expect_status(second, customer, "completed"))


async def test_two_replicas_advance_each_run_once(harness: Harness) -> None:
    customers = [harness.directory.add(phone=f"+8190777{i:05d}") for i in range(12)]
    async with harness.start() as (one, _), harness.start() as (two, _):
        for customer in customers:
            await grant_sms(one, customer)
        await asyncio.gather(*(register(one if i % 2 else two, c) for i, c in enumerate(customers)))

        async def all_reminded() -> None:
            assert len(harness.sms.sent) >= len(customers)
            for customer in customers:
                assert await run_status(one, customer) == "completed"

        await eventually(all_reminded, timeout=30)
        # Exactly one welcome mail and one SMS each, though both replicas ran timers.
        assert sorted(to for to, _ in harness.sms.sent) == sorted(
            harness.directory.contacts[c].phone for c in customers
        )
        for customer in customers:
            assert len(harness.catcher.to(harness.directory.contacts[customer].email)) == 1


async def test_an_erased_customer_leaves_the_journey(
    harness: Harness,
    service: tuple[ServiceHost[NotificationSettings], Stub],
    customer_bus: EventBus,
) -> None:
    host, _ = service
    customer = harness.directory.add(phone="+819088880000")
    await grant_sms(host, customer)
    await register(host, customer)

    async def mailed() -> None:
        assert harness.catcher.to(harness.directory.contacts[customer].email)

    await eventually(mailed)
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:  # an exit event she caused earlier
        await JourneyStore(uow.session).record_exit(
            uuid.UUID(customer), "tenpo.order.v1.OrderPlaced", datetime.now(UTC)
        )
        await uow.commit()
    await publish(customer_bus, customer_events.CustomerErased(customer_id=customer))
    await eventually(lambda: _expect_status(host, customer, "exited"))
    assert harness.sms.sent == []
    # What her run carried and her exit events are gone; the run itself stays, counted.
    async with host.runtime.db.unit_of_work() as uow:
        runs = (
            await uow.session.execute(
                sa.select(m.journey_runs.c.data).where(
                    m.journey_runs.c.customer_id == uuid.UUID(customer)
                )
            )
        ).all()
        exits = await uow.session.scalar(
            sa.select(sa.func.count()).where(m.journey_exits.c.customer_id == uuid.UUID(customer))
        )
    assert runs and all(set(run.data) <= {"variants"} for run in runs)
    assert exits == 0
