"""Messages through the API: consent, quiet hours, frequency, suppressions, one-click
unsubscribe, idempotency, tracking, erasure."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc

from services.notification.config import NotificationSettings
from services.notification.domain import tracking
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.customer.v1 import resources_pb2 as customer_pb
from tenpo.kit.events import EventBus
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import (
    Harness,
    Stub,
    eventually,
    expect_error,
    publish,
    service_caller,
    staff,
)

Service = tuple[ServiceHost[NotificationSettings], Stub]
EMAIL, SMS = pb.MESSAGE_CHANNEL_EMAIL, pb.MESSAGE_CHANNEL_SMS


def consent(customer_id: str, channel: int, status: int) -> customer_events.ConsentChanged:
    return customer_events.ConsentChanged(
        customer_id=customer_id,
        consent=customer_pb.ConsentState(
            purpose=customer_pb.CONSENT_PURPOSE_MARKETING,
            channel=channel,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
        ),
    )


async def send(
    stub: Stub, tokens: Tokens, customer: str, key: str, channel: int, **data: str
) -> pb.Message:
    request = api.SendMessageRequest(
        customer_id=customer,
        template_key=key,
        channel=channel,  # type: ignore[arg-type]
        request_id=str(uuid.uuid4()),
    )
    request.data.update(data)
    return (await stub.SendMessage(request, metadata=service_caller(tokens))).message


async def status_of(stub: Stub, tokens: Tokens, message_id: str, wanted: int) -> pb.Message:
    found: list[pb.Message] = []

    async def reached() -> None:
        message = (
            await stub.GetMessage(api.GetMessageRequest(id=message_id), metadata=staff(tokens))
        ).message
        assert message.status == wanted, message
        found.append(message)

    await eventually(reached)
    return found[-1]


async def test_callers_without_the_scope_are_refused_before_validation(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    await expect_error(
        stub.CreateTemplate(api.CreateTemplateRequest(), metadata=tokens.customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        stub.SendMessage(api.SendMessageRequest(), metadata=tokens.staff),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        stub.ListMessages(api.ListMessagesRequest()), grpc.StatusCode.UNAUTHENTICATED
    )


async def test_japanese_sms_over_one_segment_is_refused_at_preview(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    template = pb.Template(
        key="pickup_ready",
        channel=SMS,
        language="ja",
        category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
        text_body="{{ store }}店でご注文の商品をお受け取りいただけます。",
        segment_budget=1,
    )
    preview = await stub.PreviewTemplate(
        api.PreviewTemplateRequest(template=template, data={"store": "渋谷"}),  # type: ignore[arg-type]
        metadata=staff(tokens),
    )
    assert (preview.sms_encoding, preview.segments) == ("UCS-2", 1)
    request = api.PreviewTemplateRequest(template=template)
    request.data.update({"store": "渋谷" * 30})
    await expect_error(
        stub.PreviewTemplate(request, metadata=staff(tokens)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "OVER_SEGMENT_BUDGET",
    )


async def test_templates_are_versioned(service: Service, tokens: Tokens) -> None:
    _, stub = service
    created = (
        await stub.CreateTemplate(
            api.CreateTemplateRequest(
                template=pb.Template(
                    key="shipped",
                    channel=EMAIL,
                    language="en",
                    category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
                    subject="Shipped",
                    text_body="Your order {{ order }} is on its way.",
                ),
                request_id="create-shipped",
            ),
            metadata=staff(tokens),
        )
    ).template
    assert created.version == 1
    updated = (
        await stub.UpdateTemplate(
            api.UpdateTemplateRequest(
                template=pb.Template(id=created.id, subject="Your order shipped"),
            ),
            metadata=staff(tokens),
        )
    ).template
    assert (updated.version, updated.subject, updated.text_body) == (
        2,
        "Your order shipped",
        created.text_body,
    )
    await expect_error(
        stub.CreateTemplate(
            api.CreateTemplateRequest(template=created, request_id="again"),
            metadata=staff(tokens),
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "TEMPLATE_EXISTS",
    )


async def test_no_marketing_consent_gets_the_order_sms_but_no_offer(
    harness: Harness, service: Service, tokens: Tokens, customer_bus: EventBus
) -> None:
    _, stub = service
    customer = harness.directory.add(phone="+819012340000")
    order = await send(stub, tokens, customer, "order_confirmation", SMS, order_number="A-7")
    offer = await send(stub, tokens, customer, "offer", EMAIL)
    assert (offer.status, offer.status_reason) == (pb.MESSAGE_STATUS_SKIPPED, "NO_CONSENT")
    await status_of(stub, tokens, order.id, pb.MESSAGE_STATUS_SENT)
    assert harness.sms.sent == [("+819012340000", "Tenpo: ご注文A-7を承りました。")]

    # Consent arrives as the customer service's event; the next offer goes out with the
    # one-click unsubscribe headers (RFC 8058).
    await publish(
        customer_bus,
        consent(customer, customer_pb.CONSENT_CHANNEL_EMAIL, customer_pb.CONSENT_STATUS_GRANTED),
    )
    address = harness.directory.contacts[customer].email

    async def offered() -> None:
        message = await send(stub, tokens, customer, "offer", EMAIL)
        assert message.status == pb.MESSAGE_STATUS_QUEUED

    await eventually(offered)
    await eventually(_mailed(harness, address))
    mail = harness.catcher.to(address)[0].parsed()
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = re.search(r"/v1/t/u/([A-Za-z0-9_-]+)>", mail["List-Unsubscribe"])
    assert token
    await stub.Unsubscribe(api.UnsubscribeRequest(token=token.group(1)))
    after = await send(stub, tokens, customer, "offer", EMAIL)
    assert (after.status, after.status_reason) == (pb.MESSAGE_STATUS_SKIPPED, "SUPPRESSED")
    # Unsubscribing from marketing does not stop transactional mail.
    welcome = await send(stub, tokens, customer, "welcome", EMAIL)
    assert welcome.status == pb.MESSAGE_STATUS_QUEUED


def _mailed(harness: Harness, address: str, count: int = 1):  # type: ignore[no-untyped-def]
    async def check() -> None:
        assert len(harness.catcher.to(address)) >= count

    return check


async def test_marketing_sms_inside_quiet_hours_is_deferred(
    harness: Harness, tokens: Tokens
) -> None:
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    start, end = tokyo - timedelta(hours=1), tokyo + timedelta(hours=1)
    async with harness.start(
        quiet_hours_start=start.strftime("%H:%M"), quiet_hours_end=end.strftime("%H:%M")
    ) as (host, stub):
        customer = harness.directory.add(phone="+819099990000")
        assert host.runtime is not None
        async with host.runtime.db.unit_of_work() as uow:
            await host.runtime.parts["recipients"].consent_changed(
                uow, uuid.UUID(customer), 1, SMS, 3, datetime.now(UTC)
            )
            await uow.commit()
        message = await send(stub, tokens, customer, "welcome_reminder", SMS)
        assert (message.status, message.status_reason) == (
            pb.MESSAGE_STATUS_DEFERRED,
            "QUIET_HOURS",
        )
        scheduled = message.scheduled_time.ToDatetime(tzinfo=UTC).astimezone(tokyo.tzinfo)
        assert scheduled.strftime("%H:%M") == end.strftime("%H:%M")
        assert scheduled > tokyo
        # Transactional SMS are not held back.
        order = await send(stub, tokens, customer, "order_confirmation", SMS, order_number="B")
        assert order.status == pb.MESSAGE_STATUS_QUEUED
        await status_of(stub, tokens, order.id, pb.MESSAGE_STATUS_SENT)
        assert [text for _, text in harness.sms.sent] == ["Tenpo: ご注文Bを承りました。"]


async def test_concurrent_retries_make_one_message(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    _, stub = service
    customer = harness.directory.add()
    request = api.SendMessageRequest(
        customer_id=customer, template_key="welcome", channel=EMAIL, request_id="welcome-once"
    )
    answers = await asyncio.gather(
        *(stub.SendMessage(request, metadata=service_caller(tokens)) for _ in range(10))
    )
    assert len({a.message.id for a in answers}) == 1
    other = api.SendMessageRequest()
    other.CopyFrom(request)
    other.template_key = "offer"
    await expect_error(
        stub.SendMessage(other, metadata=service_caller(tokens)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    await eventually(_mailed(harness, harness.directory.contacts[customer].email))
    assert len(harness.catcher.to(harness.directory.contacts[customer].email)) == 1


async def test_click_redirects_only_to_the_recorded_url(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    _, stub = service
    customer = harness.directory.add()
    message = await send(stub, tokens, customer, "welcome", EMAIL)
    await status_of(stub, tokens, message.id, pb.MESSAGE_STATUS_SENT)
    html = harness.catcher.to(harness.directory.contacts[customer].email)[0].parsed()
    body = html.get_body(("html",))
    assert body is not None
    link = re.search(r'href="https://shop\.test/v1/t/c/([A-Za-z0-9_-]+)"', body.get_content())
    assert link
    clicked = await stub.TrackClick(api.TrackClickRequest(token=link.group(1)))
    assert clicked.url == harness.settings().shop_base_url
    seen = await status_of(stub, tokens, message.id, pb.MESSAGE_STATUS_SENT)
    assert seen.HasField("click_time") and seen.HasField("open_time")

    # A token that is not ours, or ours for a link the message never had, leads nowhere.
    tampered = link.group(1)[:-3] + ("xyz" if not link.group(1).endswith("xyz") else "abc")
    await expect_error(
        stub.TrackClick(api.TrackClickRequest(token=tampered)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TRACKING_TOKEN_INVALID",
    )
    await expect_error(
        stub.TrackClick(api.TrackClickRequest(token="https://evil.example/")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TRACKING_TOKEN_INVALID",
    )
    secret = harness.settings().tracking_secret.get_secret_value().encode()
    unknown_link = tracking.sign(secret, tracking.CLICK, uuid.UUID(message.id).bytes, 7)
    await expect_error(
        stub.TrackClick(api.TrackClickRequest(token=unknown_link)),
        grpc.StatusCode.NOT_FOUND,
        "LINK_NOT_FOUND",
    )


async def test_erasure_removes_bodies_and_addresses(
    harness: Harness, service: Service, tokens: Tokens, customer_bus: EventBus
) -> None:
    _, stub = service
    customer = harness.directory.add()
    message = await send(stub, tokens, customer, "welcome", EMAIL)
    sent = await status_of(stub, tokens, message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.to_address and sent.text_body
    await publish(customer_bus, customer_events.CustomerErased(customer_id=customer))

    async def erased() -> None:
        found = (
            await stub.GetMessage(api.GetMessageRequest(id=message.id), metadata=staff(tokens))
        ).message
        assert (found.to_address, found.subject, found.text_body, found.html_body) == (
            "",
            "",
            "",
            "",
        )

    await eventually(erased)


async def test_list_messages_pages_newest_first(
    service: Service, tokens: Tokens, harness: Harness
) -> None:
    _, stub = service
    customer = harness.directory.add()
    ids = [(await send(stub, tokens, customer, "welcome", EMAIL)).id for _ in range(3)]
    first = await stub.ListMessages(
        api.ListMessagesRequest(customer_id=customer, page_size=2), metadata=staff(tokens)
    )
    second = await stub.ListMessages(
        api.ListMessagesRequest(
            customer_id=customer, page_size=2, page_token=first.next_page_token
        ),
        metadata=staff(tokens),
    )
    assert [m.id for m in first.messages] + [m.id for m in second.messages] == ids[::-1]
    assert second.next_page_token == ""
