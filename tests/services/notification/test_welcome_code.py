"""The seeded welcome journey with a welcome promotion: a personal code the cart's
PromotionService (a real gRPC server) issues, in the welcome mail; the unopened mail's SMS
reminder says a code waits in the mail without carrying it; a cart service that is down
holds the mail back until the code can be issued (never a mail without it)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest_asyncio
import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import DEMO_WELCOME_PROMOTION
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack.net import free_port
from tests.services.notification.conftest import (
    FakeDirectory,
    Harness,
    RecordingSms,
    eventually,
    prepare_database,
)
from tests.services.notification.test_commerce_journeys import cart_server, runs_of, settings_for
from tests.services.notification.test_journeys import grant_sms, register

VALID_FOR = timedelta(days=30)


@pytest_asyncio.fixture
async def welcome_harness(
    database_url: str,
    nats_url: str,
    dev_keys: DevKeys,
    catcher: MailCatcher,
    directory: FakeDirectory,
    sms: RecordingSms,
) -> Harness:
    await prepare_database(
        database_url, welcome_promotion_id=DEMO_WELCOME_PROMOTION, welcome_code_valid_for=VALID_FOR
    )
    return Harness(database_url, nats_url, dev_keys, catcher, directory, sms)


async def test_the_welcome_mail_carries_a_code_and_the_reminder_points_to_it(
    welcome_harness: Harness,
) -> None:
    harness = welcome_harness
    port = free_port()
    customer = harness.directory.add(phone="+819012340000")
    address = harness.directory.contacts[customer].email
    async with cart_server(port) as cart, harness.start(**settings_for(harness, port)) as (host, _):
        await grant_sms(host, customer)
        await register(host, customer)

        async def mailed() -> None:
            assert len(harness.catcher.to(address)) == 1

        await eventually(mailed)
        [run] = await runs_of(host, customer)
        code = cart.codes[f"journey:{run.id}:welcome-code"]
        mail = harness.catcher.to(address)[0].parsed()
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert code in text and f"<strong>{code}</strong>" in html
        assert "2026-12-02" in text  # the expiry the cart service answered
        request, _ = cart.requests[-1]
        assert (request.promotion_id, request.customer_id) == (DEMO_WELCOME_PROMOTION, customer)
        assert request.valid_for.ToTimedelta() == VALID_FOR

        async def reminded() -> None:
            assert [to for to, _ in harness.sms.sent] == ["+819012340000"]

        await eventually(reminded)
        [(_, reminder)] = harness.sms.sent
        assert reminder == (
            "Tenpo: ようこそメールに、はじめてのお買い物で使えるクーポンコードが届いています。"
            "メールをご確認ください。"
        )
        assert code not in reminder  # the code belongs to the mail
        # One code for her, however often the step ran.
        assert {r.request_id for r, _ in cart.requests} == {f"journey:{run.id}:welcome-code"}


async def test_the_welcome_mail_waits_for_a_cart_service_that_is_down(
    welcome_harness: Harness,
) -> None:
    harness = welcome_harness
    port = free_port()  # nothing listens there yet: the cart service is down
    customer = harness.directory.add(phone="+819012341111")
    address = harness.directory.contacts[customer].email
    async with harness.start(**settings_for(harness, port)) as (host, _):
        await register(host, customer)

        async def retried() -> None:
            [run] = await runs_of(host, customer)
            assert (run.status, run.step_id) == ("active", "welcome-code")
            assert run.attempts >= 2  # tried, and tried again: never given up

        await eventually(retried)
        assert harness.catcher.to(address) == []  # no welcome mail without its code
        async with cart_server(port) as cart:
            assert host.runtime is not None
            async with host.runtime.db.unit_of_work() as uow:  # do not wait out the backoff
                await uow.session.execute(
                    sa.update(m.journey_runs)
                    .where(m.journey_runs.c.customer_id == uuid.UUID(customer))
                    .values(due_at=sa.func.now())
                )
                await uow.commit()
            host.runtime.parts["journeys"].due.set()

            async def mailed() -> None:
                assert len(harness.catcher.to(address)) == 1

            await eventually(mailed)
            [run] = await runs_of(host, customer)
            code = cart.codes[f"journey:{run.id}:welcome-code"]
            text = harness.catcher.to(address)[0].parsed().get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert code in text
