"""Returns by mail reach the customer, over real NATS, PostgreSQL and SMTP: the order
service's ReturnAuthorized becomes one mail in her language naming the order, the return
number, the units and the date, however often the event is delivered; a cancelled
authorization sends its short mail; a guest's order is asked (GetOrder, as this service)
for its contact e-mail; an unknown, erased or malformed customer stops nothing."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from services.notification.config import NotificationSettings
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.devtools.stack.net import free_port
from tenpo.kit.db import event_subject
from tenpo.kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    OCCURRED_AT_HEADER,
    EventBus,
    stream_name,
)
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tenpo.order.v1 import events_pb2 as order_events
from tenpo.order.v1 import order_service_pb2 as order_api
from tenpo.order.v1 import order_service_pb2_grpc as order_grpc
from tenpo.order.v1 import resources_pb2 as order_pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import (
    Harness,
    Stub,
    eventually,
    fake_server,
    publish,
    staff,
)

SERVICE_TOKEN = "notification-service-token"
#: 15:30 UTC is 00:30 the next day in Tokyo: the mail says the recipient's local time.
EXPIRES = datetime(2026, 12, 15, 15, 30, tzinfo=UTC)


@dataclass
class FakeOrders(order_grpc.OrderServiceServicer):
    """GetOrder as the order service answers a service with orders:read."""

    contacts: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def GetOrder(
        self, request: order_api.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_api.GetOrderResponse:
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.asked.append((request.order_id, str(authorization)))
        if request.order_id not in self.contacts:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return order_api.GetOrderResponse(
            order=order_pb.Order(id=request.order_id, contact_email=self.contacts[request.order_id])
        )


def orders_server(port: int, fake: FakeOrders) -> AbstractAsyncContextManager[FakeOrders]:
    return fake_server(port, fake, order_grpc.add_OrderServiceServicer_to_server)


def settings_for(order_port: int) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "order_target": f"127.0.0.1:{order_port}",
        "customer_token": SERVICE_TOKEN,
        "cart_consumer": f"notification-cart-{suffix}",
        "order_consumer": f"notification-order-{suffix}",
        "outgoing_timeout_seconds": 2.0,
    }


def authorized(
    customer_id: str, number: str, order_number: str = "T-000042", has_contact_email: bool = False
) -> order_events.ReturnAuthorized:
    expire = timestamp_pb2.Timestamp()
    expire.FromDatetime(EXPIRES)
    return order_events.ReturnAuthorized(
        order_id=str(uuid.uuid4()),
        order_number=order_number,
        customer_id=customer_id,
        return_authorization_id=str(uuid.uuid4()),
        number=number,
        lines=[
            order_events.OrderEventLine(sku="SNK-0001-27", quantity=2, location_id="dc-east"),
            order_events.OrderEventLine(sku="SOCK-0002-M", quantity=1, location_id="dc-east"),
        ],
        ship_to="dc-east",
        expire_time=expire,
        reason="TOO_SMALL",
        has_contact_email=has_contact_email,
    )


async def deliver(bus: EventBus, message: Message, event_id: str) -> None:
    """As the outbox relay would, with ``event_id``; a fresh broker message id, so that a
    second call is a second delivery of the same event (a relay that published again after
    a lost acknowledgement), not a duplicate the broker drops."""
    await bus.publish(
        event_subject(message),
        message.SerializeToString(),
        {
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
            OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
        },
        msg_id=str(uuid.uuid4()),
    )


async def drained(bus: EventBus, host: ServiceHost[NotificationSettings]) -> None:
    """Every event on the order stream was delivered to the consumer and acknowledged."""

    async def done() -> None:
        info = await bus.js.consumer_info(stream_name("order"), host.settings.order_consumer)
        assert (info.num_pending, info.num_ack_pending) == (0, 0)

    await eventually(done, timeout=60)


async def messages_of(stub: Stub, tokens: Tokens, customer_id: str = "") -> list[Any]:
    listed = await stub.ListMessages(
        api.ListMessagesRequest(customer_id=customer_id, page_size=100), metadata=staff(tokens)
    )
    return [m for m in listed.messages if m.template_key.startswith("return_")]


def text_of(mail: Any) -> str:
    """The plain part, with the wire's CRLF line ends as newlines."""
    return str(mail.parsed().get_body(("plain",)).get_content()).replace("\r\n", "\n")


async def test_a_return_authorization_is_mailed_once_in_her_language(
    harness: Harness, buses: dict[str, EventBus], tokens: Tokens
) -> None:
    ja = harness.directory.add(email="ja-return@example.jp")
    en = harness.directory.add(email="en-return@example.jp", locale="en-US")
    event_id = str(uuid.uuid4())
    async with harness.start(**settings_for(free_port())) as (host, stub):
        event = authorized(ja, "R-000045")
        await deliver(buses["order"], event, event_id)
        await deliver(buses["order"], authorized(en, "R-000046", "T-000043"), str(uuid.uuid4()))
        await deliver(buses["order"], event, event_id)  # the same event, delivered again

        async def mailed() -> None:
            assert len(harness.catcher.to("ja-return@example.jp")) >= 1
            assert len(harness.catcher.to("en-return@example.jp")) == 1

        await eventually(mailed, timeout=60)
        await drained(buses["order"], host)

        async def all_sent() -> None:
            found = await messages_of(stub, tokens, ja)
            assert [(m.template_key, m.status) for m in found] == [
                ("return_authorized", pb.MESSAGE_STATUS_SENT)
            ]

        await eventually(all_sent)
        [ja_mail] = harness.catcher.to("ja-return@example.jp")  # once, though delivered twice
        parsed = ja_mail.parsed()
        assert str(parsed["subject"]) == "Tenpo: ご返品を承りました（R-000045）"
        text = text_of(ja_mail)
        assert "花子様" in text and "ご注文T-000042の返品を承りました" in text
        assert "- SNK-0001-27 × 2\n- SOCK-0002-M × 1\n" in text
        assert "dc-east" in text and "2026-12-16 00:30 までに届く" in text
        html = str(parsed.get_body(("html",)).get_content())  # type: ignore[union-attr]
        assert "<li>SNK-0001-27 × 2</li>" in html

        [en_mail] = harness.catcher.to("en-return@example.jp")
        assert str(en_mail.parsed()["subject"]) == "Tenpo: your return R-000046 is authorized"
        text = text_of(en_mail)
        assert "We accepted your return for order T-000043" in text
        assert "- SNK-0001-27 × 2\n- SOCK-0002-M × 1\n" in text
        assert "arrives by 2026-12-16 00:30" in text
        assert "ご返品" not in text


async def test_a_cancelled_authorization_sends_its_mail(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    customer = harness.directory.add(email="withdrawn@example.jp", locale="en-GB")
    async with harness.start(**settings_for(free_port())):
        await publish(
            buses["order"],
            order_events.ReturnAuthorizationCancelled(
                order_id=str(uuid.uuid4()),
                order_number="T-000077",
                customer_id=customer,
                return_authorization_id=str(uuid.uuid4()),
                number="R-000078",
            ),
        )

        async def mailed() -> None:
            assert len(harness.catcher.to("withdrawn@example.jp")) == 1

        await eventually(mailed, timeout=60)
        [mail] = harness.catcher.to("withdrawn@example.jp")
        assert str(mail.parsed()["subject"]) == "Tenpo: your return R-000078 is cancelled"
        assert "The return R-000078 for order T-000077 is cancelled" in text_of(mail)


async def test_a_guest_order_is_mailed_at_the_address_the_order_service_gives(
    harness: Harness, buses: dict[str, EventBus], tokens: Tokens
) -> None:
    port = free_port()
    with_mail = authorized("", "R-000100", "T-000100", has_contact_email=True)
    gone = authorized("", "R-000101", "T-000101", has_contact_email=True)  # order erased
    phone_only = authorized("", "R-000102", "T-000102", has_contact_email=False)
    fake = FakeOrders({with_mail.order_id: "guest-return@example.jp"})
    async with orders_server(port, fake), harness.start(**settings_for(port)) as (host, stub):
        for event in (with_mail, gone, phone_only):
            await publish(buses["order"], event)

        async def mailed() -> None:
            assert len(harness.catcher.to("guest-return@example.jp")) == 1

        await eventually(mailed, timeout=60)
        await drained(buses["order"], host)
        text = text_of(harness.catcher.to("guest-return@example.jp")[0])
        assert "お客様様" not in text and "お客様" in text and "R-000100" in text
        # Asked as the service itself; never for an order that announced no e-mail.
        assert {order for order, _ in fake.asked} == {with_mail.order_id, gone.order_id}
        assert {auth for _, auth in fake.asked} == {f"Bearer {SERVICE_TOKEN}"}
        found = await messages_of(stub, tokens)
        assert [(m.customer_id, m.to_address) for m in found if "R-0001" in m.subject] == [
            ("", "guest-return@example.jp")
        ]


async def test_a_guest_mail_waits_for_an_order_service_that_does_not_answer(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    port = free_port()  # nothing listens yet: the order service is down
    event = authorized("", "R-000200", "T-000200", has_contact_email=True)
    async with harness.start(**settings_for(port)):
        await publish(buses["order"], event)
        fake = FakeOrders({event.order_id: "patient-return@example.jp"})

        async def asked() -> None:  # not dropped while the order service was away ...
            assert fake.asked

        async with orders_server(port, fake):
            await eventually(asked, timeout=60)

            async def mailed() -> None:  # ... and mailed once it answers
                assert len(harness.catcher.to("patient-return@example.jp")) == 1

            await eventually(mailed, timeout=60)


async def test_an_unknown_erased_or_malformed_customer_stops_nothing(
    harness: Harness,
    buses: dict[str, EventBus],
    customer_bus: EventBus,
    tokens: Tokens,
) -> None:
    erased = harness.directory.add(email="erased-return@example.jp")
    later = harness.directory.add(email="later-return@example.jp")
    unknown = str(uuid.uuid4())
    async with harness.start(**settings_for(free_port())) as (host, stub):
        # Her contact copy is kept from a first mail; then she is erased everywhere.
        await publish(buses["order"], authorized(erased, "R-000300"))

        async def first_mailed() -> None:
            assert len(harness.catcher.to("erased-return@example.jp")) == 1

        await eventually(first_mailed, timeout=60)
        del harness.directory.contacts[erased]
        await publish(customer_bus, customer_events.CustomerErased(customer_id=erased))

        async def erasure_applied() -> None:
            [message] = await messages_of(stub, tokens, erased)
            assert (message.to_address, message.text_body) == ("", "")

        await eventually(erasure_applied, timeout=60)

        for customer, number in ((erased, "R-000301"), (unknown, "R-000302"), ("c-1", "R-000303")):
            await publish(buses["order"], authorized(customer, number))
        await publish(buses["order"], authorized(later, "R-000304"))  # and the stream goes on

        async def later_mailed() -> None:
            assert len(harness.catcher.to("later-return@example.jp")) == 1

        await eventually(later_mailed, timeout=60)
        await drained(buses["order"], host)
        for customer in (erased, unknown):
            newest = (await messages_of(stub, tokens, customer))[0]
            assert (newest.status, newest.status_reason) == (
                pb.MESSAGE_STATUS_SKIPPED,
                "UNREACHABLE",
            )
        assert len(harness.catcher.to("erased-return@example.jp")) == 1
