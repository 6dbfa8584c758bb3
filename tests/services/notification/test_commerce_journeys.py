"""Cart and order journeys over real NATS, PostgreSQL and SMTP: an abandoned cart gets a mail
with a personal code the cart's PromotionService (a real gRPC server) issued to this service
as itself; a cart service that is down leaves the run at its step until it answers; an
order gets a one-segment confirmation SMS; order events are subscribed by name."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from services.notification import models as m
from services.notification.config import DEMO_PERSONAL_CODE_PROMOTION, NotificationSettings
from services.notification.domain.templates import Channel
from services.notification.subscribers.commerce import event_fields, order_subscription
from services.notification.usecases.journeys import Journeys
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc as cart_grpc
from tenpo.cart.v1 import events_pb2 as cart_events
from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc as promo_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.devtools.stack.net import free_port
from tenpo.kit.events import Event, EventBus
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.conftest import Tokens
from tests.services.notification.conftest import (
    Harness,
    eventually,
    fake_server,
    publish,
    staff,
)

MARKETING, GRANTED = 1, 3
SERVICE_TOKEN = "notification-service-token"


@dataclass
class FakePromotions(promo_grpc.PromotionServiceServicer):
    """The cart's PromotionService: one code per request id, as the real one promises."""

    requests: list[tuple[promo_api.IssuePersonalCodeRequest, str]] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)

    async def IssuePersonalCode(
        self, request: promo_api.IssuePersonalCodeRequest, context: grpc.aio.ServicerContext
    ) -> promo_api.IssuePersonalCodeResponse:
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.requests.append((request, str(authorization)))
        code = self.codes.setdefault(request.request_id, f"CODE{len(self.codes) + 1:08d}")
        expire = timestamp_pb2.Timestamp()
        expire.FromDatetime(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))
        return promo_api.IssuePersonalCodeResponse(code=code, expire_time=expire)


def cart_server(port: int) -> AbstractAsyncContextManager[FakePromotions]:
    return fake_server(port, FakePromotions(), promo_grpc.add_PromotionServiceServicer_to_server)


def settings_for(harness: Harness, cart_port: int) -> dict[str, Any]:
    # Unique durables: every test reads the streams from their start.
    suffix = uuid.uuid4().hex[:8]
    return {
        "cart_target": f"127.0.0.1:{cart_port}",
        "customer_token": SERVICE_TOKEN,
        "cart_consumer": f"notification-cart-{suffix}",
        "order_consumer": f"notification-order-{suffix}",
        "outgoing_timeout_seconds": 0.5,
    }


async def grant_email(host: ServiceHost[NotificationSettings], customer_id: str) -> None:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        await host.runtime.parts["recipients"].consent_changed(
            uow, uuid.UUID(customer_id), MARKETING, int(Channel.EMAIL), GRANTED, datetime.now(UTC)
        )
        await uow.commit()


async def runs_of(host: ServiceHost[NotificationSettings], customer_id: str) -> list[Any]:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.select(m.journey_runs, m.journeys.c.display_name)
            .join(m.journeys, m.journeys.c.id == m.journey_runs.c.journey_id)
            .where(m.journey_runs.c.customer_id == uuid.UUID(customer_id))
        )
        return list(rows.all())


def abandoned(customer_id: str) -> cart_events.CartAbandoned:
    return cart_events.CartAbandoned(cart_id=str(uuid.uuid4()), customer_id=customer_id)


async def test_an_abandoned_cart_gets_a_mail_with_a_personal_code(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    port = free_port()
    customer = harness.directory.add(email="cart@example.jp")
    async with cart_server(port) as cart, harness.start(**settings_for(harness, port)) as (host, _):
        await grant_email(host, customer)
        await publish(buses["cart"], abandoned(customer))
        await publish(buses["cart"], abandoned(""))  # a guest's cart: nobody to write to

        async def mailed() -> None:
            assert len(harness.catcher.to("cart@example.jp")) == 1

        await eventually(mailed)
        mail = harness.catcher.to("cart@example.jp")[0].parsed()
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        code = cart.codes[f"journey:{(await runs_of(host, customer))[0].id}:personal-code"]
        assert code in text and "2026-12-02" in text
        # A call that timed out on a busy machine is retried with the same request id: one code.
        assert {request.request_id for request, _ in cart.requests} == {
            f"journey:{(await runs_of(host, customer))[0].id}:personal-code"
        }
        request, authorization = cart.requests[-1]
        assert request.promotion_id == DEMO_PERSONAL_CODE_PROMOTION
        assert request.customer_id == customer
        assert request.valid_for.ToTimedelta() == timedelta(hours=48)
        assert authorization == f"Bearer {SERVICE_TOKEN}"  # as the service itself
        [run] = await runs_of(host, customer)
        assert (run.display_name, run.status, run.data["code"]) == (
            "Abandoned cart",
            "completed",
            code,
        )


async def test_cart_down_leaves_the_run_at_its_step_until_the_cart_answers(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    port = free_port()  # nothing listens there yet: the cart service is down
    customer = harness.directory.add(email="later@example.jp")
    async with harness.start(**settings_for(harness, port)) as (host, _):
        await grant_email(host, customer)
        await publish(buses["cart"], abandoned(customer))

        async def retried() -> None:
            runs = await runs_of(host, customer)
            assert len(runs) == 1
            run = runs[0]
            assert (run.status, run.step_id, run.waiting) == ("active", "personal-code", False)
            assert run.attempts >= 2  # tried, and tried again: never given up
            assert run.due_at > datetime.now(UTC) - timedelta(seconds=1)

        await eventually(retried)
        assert harness.catcher.to("later@example.jp") == []
        async with cart_server(port) as cart:
            assert host.runtime is not None
            async with host.runtime.db.unit_of_work() as uow:  # do not wait out the backoff
                await uow.session.execute(sa.update(m.journey_runs).values(due_at=sa.func.now()))
                await uow.commit()
            host.runtime.parts["journeys"].due.set()

            async def mailed() -> None:
                assert len(harness.catcher.to("later@example.jp")) == 1

            await eventually(mailed)
            [run] = await runs_of(host, customer)
            code = cart.codes[f"journey:{run.id}:personal-code"]
            mail = harness.catcher.to("later@example.jp")[0].parsed()
            assert code in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        [run] = await runs_of(host, customer)
        assert run.status == "completed"


async def test_an_order_gets_a_one_segment_confirmation_sms_and_ends_the_cart_journey(
    harness: Harness, buses: dict[str, EventBus], tokens: Tokens
) -> None:
    port = free_port()  # no cart: the abandoned-cart run waits at its code step
    ja = harness.directory.add(phone="+819011112222")
    en = harness.directory.add(phone="+819033334444", locale="en-US")
    async with harness.start(**settings_for(harness, port)) as (host, stub):
        await publish(buses["cart"], abandoned(ja))

        async def waiting_for_code() -> None:
            assert [r.status for r in await runs_of(host, ja)] == ["active"]

        await eventually(waiting_for_code)
        for customer, number in ((ja, "T-000042"), (en, "T-000043")):
            await publish(
                buses["order"],
                order_events.OrderPlaced(
                    order_id=str(uuid.uuid4()), order_number=number, customer_id=customer
                ),
            )

        phones = ("+819011112222", "+819033334444")

        def ours() -> list[tuple[str, str]]:  # the stream may hold other tests' orders
            return sorted(sent for sent in harness.sms.sent if sent[0] in phones)

        async def texted() -> None:
            assert len(ours()) == 2

        await eventually(texted)
        assert ours() == [
            ("+819011112222", "Tenpo: ご注文T-000042を承りました。"),
            ("+819033334444", "Tenpo: we received your order T-000043. Thank you!"),
        ]

        async def recorded_as_one_segment() -> None:
            listed = await stub.ListMessages(
                api.ListMessagesRequest(customer_id=ja), metadata=staff(tokens)
            )
            [sms] = [x for x in listed.messages if x.channel == pb.MESSAGE_CHANNEL_SMS]
            assert (sms.template_key, sms.segments, sms.status) == (
                "order_confirmation",
                1,
                pb.MESSAGE_STATUS_SENT,
            )

        await eventually(recorded_as_one_segment)

        async def cart_journey_exited() -> None:
            statuses = {r.display_name: r.status for r in await runs_of(host, ja)}
            assert statuses == {
                "Abandoned cart": "exited",
                "Order confirmation": "completed",
                "Thank you": "completed",  # left at its consent check: no marketing consent
            }

        host.runtime.parts["journeys"].due.set()  # type: ignore[union-attr]
        await eventually(cart_journey_exited)


def test_order_events_are_subscribed_by_name_including_those_not_in_this_build() -> None:
    subscription = order_subscription(Journeys.__new__(Journeys))
    subjects = subscription.subjects()
    assert "tenpo.order.order_placed" in subjects
    assert "tenpo.order.ready_for_pickup" in subjects
    assert subscription.handler_for("tenpo.order.v1.ReadyForPickup") is not None

    def event(event_type: str, payload: bytes) -> Event:
        return Event(uuid.uuid4(), event_type, "s", payload, None)

    placed = order_events.OrderPlaced(order_number="T-000001", customer_id="c", store_id="s1")
    placed.total.currency_code = "JPY"
    placed.total.units = 1200
    assert event_fields(event(placed.DESCRIPTOR.full_name, placed.SerializeToString())) == {
        "order_number": "T-000001",
        "customer_id": "c",
        "store_id": "s1",
        "total_currency_code": "JPY",
        "total_units": "1200",
    }
    assert event_fields(event("tenpo.order.v1.NotInThisBuild", b"\x0a\x01x")) is None
    # A fulfilment event's customer and order number are in its nested reference: they come
    # under their bare names too, so the journey finds her and its text names the order.
    ready = order_events.ReadyForPickup(
        fulfillment=order_events.FulfillmentRef(
            order_id="o", order_number="T-000002", customer_id="c2", fulfillment_number="T-000002-1"
        )
    )
    assert event_fields(event(ready.DESCRIPTOR.full_name, ready.SerializeToString())) == {
        "fulfillment_order_id": "o",
        "fulfillment_order_number": "T-000002",
        "fulfillment_customer_id": "c2",
        "fulfillment_fulfillment_number": "T-000002-1",
        "order_id": "o",
        "order_number": "T-000002",
        "customer_id": "c2",
        "fulfillment_number": "T-000002-1",
    }


async def test_a_journey_on_a_new_order_event_needs_only_its_name(
    harness: Harness, tokens: Tokens
) -> None:
    """Journeys are data: one on an order event this build does not know is accepted."""
    async with harness.start() as (_, stub):
        created = await stub.CreateJourney(
            api.CreateJourneyRequest(
                journey=pb.Journey(
                    display_name="Shipped",
                    trigger_event="tenpo.order.v1.FulfillmentShipped",
                    steps=[
                        pb.JourneyStep(
                            id="sms",
                            send=pb.SendStep(
                                template_key="order_confirmation",
                                channel=pb.MESSAGE_CHANNEL_SMS,
                            ),
                        )
                    ],
                )
            ),
            metadata=staff(tokens),
        )
    assert created.journey.trigger_event == "tenpo.order.v1.FulfillmentShipped"


async def test_a_round_asks_a_failing_cart_once_and_reschedules_every_code_step(
    database_url: str,
) -> None:
    """With the cart down, one round does not wait out a deadline per run: the first
    failure reschedules the round's other issue-code steps at once."""
    from services.notification.domain import journeys as jd
    from services.notification.store import JourneyStore
    from tenpo.kit.db import Database
    from tenpo.kit.errors import Unavailable
    from tests.services.notification.conftest import prepare_database

    calls: list[str] = []

    class DownCart:
        async def issue(
            self,
            promotion_id: str,
            customer_id: Any,
            valid_for: Any,
            request_id: str,
            skus: Any = (),
        ) -> Any:
            calls.append(request_id)
            raise Unavailable("down", reason="CART_UNAVAILABLE")

    await prepare_database(database_url)
    db = Database(database_url)
    try:
        no_messages = SimpleNamespace(queued=asyncio.Event())  # no send step here
        journeys = Journeys(db, no_messages, DownCart())  # type: ignore[arg-type]
        event = f"tenpo.test.v1.Trigger{uuid.uuid4().hex[:8]}"
        async with db.unit_of_work() as uow:
            await JourneyStore(uow.session).insert(
                jd.Journey(
                    "Codes",
                    event,
                    (jd.Step("code", jd.IssueCode(str(uuid.uuid4()))),),
                )
            )
            for _ in range(5):
                await journeys.on_event(uow, event, uuid.uuid4(), str(uuid.uuid4()), None)
            await uow.commit()
        assert await journeys.advance_due(50) == 5
        assert len(calls) == 1
        async with db.unit_of_work() as uow:
            rows = (
                await uow.session.execute(
                    sa.select(
                        m.journey_runs.c.status, m.journey_runs.c.attempts, m.journey_runs.c.step_id
                    )
                )
            ).all()
        assert sorted(tuple(r) for r in rows) == [("active", 1, "code")] * 5
    finally:
        await db.dispose()


@dataclass
class FakeCarts(cart_grpc.CartServiceServicer):
    """GetCart as the cart service answers a service with carts:read."""

    contacts: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def GetCart(
        self, request: cart_api.GetCartRequest, context: grpc.aio.ServicerContext
    ) -> cart_api.GetCartResponse:
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.asked.append((request.cart_id, str(authorization)))
        if request.cart_id not in self.contacts:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such cart")
        return cart_api.GetCartResponse(
            cart=cart_pb.Cart(id=request.cart_id, contact_email=self.contacts[request.cart_id])
        )


def carts_server(port: int, fake: FakeCarts) -> AbstractAsyncContextManager[FakeCarts]:
    return fake_server(port, fake, cart_grpc.add_CartServiceServicer_to_server)


def guest_abandoned(cart_id: str, has_contact_email: bool = True) -> cart_events.CartAbandoned:
    return cart_events.CartAbandoned(
        cart_id=cart_id,
        has_contact_email=has_contact_email,
        lines=[cart_events.CartLine(sku="SNK-1", quantity=1)],
    )


async def test_a_guest_cart_with_a_contact_email_gets_a_reminder(
    harness: Harness, buses: dict[str, EventBus], tokens: Tokens
) -> None:
    port = free_port()
    with_mail, gone, silent = (str(uuid.uuid4()) for _ in range(3))
    fake = FakeCarts({with_mail: "guest@example.jp"})
    async with (
        carts_server(port, fake),
        harness.start(**settings_for(harness, port)) as (
            _,
            stub,
        ),
    ):
        await publish(buses["cart"], guest_abandoned(with_mail))
        await publish(buses["cart"], guest_abandoned(gone))  # the cart is gone: nothing
        await publish(buses["cart"], guest_abandoned(silent, has_contact_email=False))

        async def mailed() -> None:
            assert len(harness.catcher.to("guest@example.jp")) == 1
            assert gone in {cart for cart, _ in fake.asked}

        await eventually(mailed)
        mail = harness.catcher.to("guest@example.jp")[0].parsed()
        assert str(mail["subject"]) == "お買い物かごに商品が残っています"
        # Marketing: one-click unsubscribe works by address for a guest too.
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # Asked as the service itself; never for a cart that announced no e-mail.
        assert {auth for _, auth in fake.asked} == {f"Bearer {SERVICE_TOKEN}"}
        assert silent not in {cart for cart, _ in fake.asked}

        async def recorded_as_sent() -> None:  # the sender commits after SMTP accepted it
            listed = await stub.ListMessages(api.ListMessagesRequest(), metadata=staff(tokens))
            [guest] = [x for x in listed.messages if x.template_key == "cart_abandoned_guest"]
            assert guest.customer_id == "" and guest.status == pb.MESSAGE_STATUS_SENT

        await eventually(recorded_as_sent)


async def test_a_guest_reminder_waits_for_a_cart_service_that_does_not_answer(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    port = free_port()  # nothing listens yet: the cart service is down
    cart_id = str(uuid.uuid4())
    async with harness.start(**settings_for(harness, port)):
        await publish(buses["cart"], guest_abandoned(cart_id))
        fake = FakeCarts({cart_id: "patient@example.jp"})
        async with carts_server(port, fake):
            # The event is delivered again (backoff) until the cart answers.

            async def mailed() -> None:
                assert len(harness.catcher.to("patient@example.jp")) == 1

            await eventually(mailed, timeout=60)
