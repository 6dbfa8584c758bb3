"""The seeded welcome journey with a welcome promotion: a personal code the cart's
PromotionService (a real gRPC server) issues, in the welcome mail; the unopened mail's SMS
reminder says a code waits in the mail without carrying it; a cart service that is down
holds the mail back until the code can be issued (never a mail without it); a database an
older seed left is brought up to date where nobody changed it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest_asyncio
import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import DEMO_WELCOME_PROMOTION
from services.notification.domain import journeys as jd
from services.notification.domain.templates import Channel
from services.notification.seed import SUPERSEDED_TEXT, default_templates, seed_defaults
from services.notification.store import JourneyStore, TemplateStore
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack.net import free_port
from tenpo.kit.db import Database
from tests.services.notification.conftest import (
    REMINDER_AFTER,
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
        # Registrations of other tests on the shared stream start runs too: hers only.
        mine = [request for request, _ in cart.requests if request.customer_id == customer]
        assert {r.promotion_id for r in mine} == {DEMO_WELCOME_PROMOTION}
        assert {r.valid_for.ToTimedelta() for r in mine} == {VALID_FOR}

        def texts() -> list[str]:
            return [text for to, text in harness.sms.sent if to == "+819012340000"]

        async def reminded() -> None:
            assert len(texts()) == 1

        await eventually(reminded)
        [reminder] = texts()
        assert reminder == (
            "Tenpo: ようこそメールに、はじめてのお買い物で使えるクーポンコードが届いています。"
            "メールをご確認ください。"
        )
        assert code not in reminder  # the code belongs to the mail
        # One code for her, however often the step ran.
        assert {r.request_id for r in mine} == {f"journey:{run.id}:welcome-code"}


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


async def test_an_older_seeds_welcome_gets_its_code_and_a_retailers_wording_is_kept(
    database_url: str,
) -> None:
    await prepare_database(database_url)  # the welcome journey as seeded before: no code
    reminder = m.templates.c
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            # The Japanese reminder as the older seed wrote it; the English one the retailer's.
            for language, text in (
                ("ja", SUPERSEDED_TEXT[("welcome_reminder", Channel.SMS, "ja")]),
                ("en", "Tenpo: our own words."),
            ):
                await uow.session.execute(
                    sa.update(m.templates)
                    .where(reminder.key == "welcome_reminder", reminder.language == language)
                    .values(text_body=text)
                )
            await uow.commit()
        for _ in range(2):  # the second seed finds nothing to do
            await seed_defaults(
                db,
                REMINDER_AFTER,
                welcome_promotion_id=DEMO_WELCOME_PROMOTION,
                welcome_code_valid_for=VALID_FOR,
            )
        new = next(
            t for t in default_templates() if (t.key, t.language) == ("welcome_reminder", "ja")
        )
        async with db.unit_of_work() as uow:
            store = TemplateStore(uow.session)
            ja = await store.find("welcome_reminder", Channel.SMS, "ja")
            en = await store.find("welcome_reminder", Channel.SMS, "en")
            row = (
                await uow.session.execute(
                    sa.select(m.journeys.c.id).where(m.journeys.c.display_name == "Welcome")
                )
            ).one()
            welcome = await JourneyStore(uow.session).get(row.id)
        assert ja is not None and en is not None and welcome is not None
        assert (ja.text_body, ja.version) == (new.text_body, 2)
        assert en.text_body == "Tenpo: our own words."
        assert [s.id for s in welcome.steps] == [
            "welcome-code",
            "welcome-mail",
            "wait-for-open",
            "opened?",
            "reminder-sms",
        ]
        assert welcome.steps[0].action == jd.IssueCode(DEMO_WELCOME_PROMOTION, VALID_FOR)
        assert welcome.version == 2
    finally:
        await db.dispose()
