"""Provider delivery reports (RecordDeliveryStatus, as a service: a bounce suppresses the
address), push subscriptions (owner only, bounded, validated) and push messages sent to
them, and the development inbox (ListMessages: newest first, paged)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import grpc
import pytest

from services.notification.config import NotificationSettings
from services.notification.domain.push import MAX_PER_CUSTOMER
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import (
    Harness,
    Stub,
    eventually,
    expect_error,
    service_caller,
    staff,
)

Service = tuple[ServiceHost[NotificationSettings], Stub]
EMAIL, SMS, PUSH = pb.MESSAGE_CHANNEL_EMAIL, pb.MESSAGE_CHANNEL_SMS, pb.MESSAGE_CHANNEL_PUSH


def reporter(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    """The gateway as a service, after it checked the provider's signature."""
    return tokens.metadata(
        tokens.mint(subject="gateway", kind="service", scopes=["notifications:callbacks"])
    )


def customer(tokens: Tokens, customer_id: str) -> tuple[tuple[str, str], ...]:
    return tokens.metadata(tokens.mint(subject=customer_id, kind="customer", scopes=[]))


def b64(size: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(size)).decode().rstrip("=")


def subscription(n: int = 0) -> pb.PushSubscription:
    return pb.PushSubscription(
        endpoint=f"https://push.example.com/send/{n}-{uuid.uuid4().hex}",
        p256dh=b64(65),
        auth=b64(16),
        device_label=f"browser {n}",
    )


async def sent_message(stub: Stub, tokens: Tokens, customer_id: str, channel: int) -> pb.Message:
    request = api.SendMessageRequest(
        customer_id=customer_id,
        template_key="order_confirmation" if channel == SMS else "welcome",
        channel=channel,  # type: ignore[arg-type]
        request_id=str(uuid.uuid4()),
    )
    request.data.update({"order_number": "T-000001"})
    message = (await stub.SendMessage(request, metadata=service_caller(tokens))).message
    found: list[pb.Message] = []

    async def sent() -> None:
        got = await stub.GetMessage(api.GetMessageRequest(id=message.id), metadata=staff(tokens))
        assert got.message.status == pb.MESSAGE_STATUS_SENT
        found.append(got.message)

    await eventually(sent)
    return found[-1]


async def provider_id_of(host: ServiceHost[NotificationSettings], message_id: str) -> str:
    import sqlalchemy as sa

    from services.notification import models as m

    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        row = await uow.session.execute(
            sa.select(m.messages.c.provider_id).where(m.messages.c.id == uuid.UUID(message_id))
        )
        return str(row.scalar_one())


async def test_a_bounce_suppresses_the_address_and_a_delivery_is_recorded(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    host, stub = service
    bounced = harness.directory.add(phone="+819055556666")
    delivered = harness.directory.add(phone="+819077778888")
    first = await sent_message(stub, tokens, bounced, SMS)
    second = await sent_message(stub, tokens, delivered, SMS)
    for message, status in (
        (first, api.DELIVERY_STATUS_BOUNCED),
        (second, api.DELIVERY_STATUS_DELIVERED),
    ):
        answer = await stub.RecordDeliveryStatus(
            api.RecordDeliveryStatusRequest(
                channel=SMS,
                provider_message_id=await provider_id_of(host, message.id),
                status=status,
            ),
            metadata=reporter(tokens),
        )
        assert answer.message_id == message.id
        assert answer.suppressed == (status == api.DELIVERY_STATUS_BOUNCED)
    got = await stub.GetMessage(api.GetMessageRequest(id=first.id), metadata=staff(tokens))
    assert got.message.delivery_status == "BOUNCED"
    got = await stub.GetMessage(api.GetMessageRequest(id=second.id), metadata=staff(tokens))
    assert got.message.delivery_status == "DELIVERED"
    listed = await stub.ListSuppressions(api.ListSuppressionsRequest(), metadata=staff(tokens))
    [suppression] = [s for s in listed.suppressions if s.address == "+819055556666"]
    assert (suppression.reason, suppression.marketing_only) == ("HARD_BOUNCE", False)
    assert not [s for s in listed.suppressions if s.address == "+819077778888"]
    # Even a transactional SMS no longer goes to the bounced number.
    request = api.SendMessageRequest(
        customer_id=bounced,
        template_key="order_confirmation",
        channel=SMS,
        request_id=str(uuid.uuid4()),
    )
    request.data.update({"order_number": "T-000002"})
    skipped = (await stub.SendMessage(request, metadata=service_caller(tokens))).message
    assert (skipped.status, skipped.status_reason) == (pb.MESSAGE_STATUS_SKIPPED, "SUPPRESSED")


async def test_bad_reports_are_refused_and_only_services_with_the_scope_may_report(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RecordDeliveryStatus(
            api.RecordDeliveryStatusRequest(channel=PUSH, provider_message_id="", status=0),
            metadata=reporter(tokens),
        )
    details = decode_error(caught.value)
    assert (caught.value.code(), details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DELIVERY_REPORT_INVALID",
    )
    assert {v.field for v in details.field_violations} == {
        "channel",
        "provider_message_id",
        "status",
    }
    unknown = api.RecordDeliveryStatusRequest(
        channel=SMS, provider_message_id="nope", status=api.DELIVERY_STATUS_DELIVERED
    )
    await expect_error(
        stub.RecordDeliveryStatus(unknown, metadata=reporter(tokens)),
        grpc.StatusCode.NOT_FOUND,
        "MESSAGE_NOT_FOUND",
    )
    await expect_error(
        stub.RecordDeliveryStatus(unknown, metadata=staff(tokens)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_push_subscriptions_are_the_owners_bounded_and_validated(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    hers, other = str(uuid.uuid4()), str(uuid.uuid4())
    created = (
        await stub.CreatePushSubscription(
            api.CreatePushSubscriptionRequest(customer_id="me", subscription=subscription()),
            metadata=customer(tokens, hers),
        )
    ).subscription
    assert created.id and created.device_label == "browser 0"
    # Somebody else can neither register for her, list hers nor delete hers.
    await expect_error(
        stub.CreatePushSubscription(
            api.CreatePushSubscriptionRequest(customer_id=hers, subscription=subscription()),
            metadata=customer(tokens, other),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )
    await expect_error(
        stub.ListPushSubscriptions(
            api.ListPushSubscriptionsRequest(customer_id=hers), metadata=customer(tokens, other)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )
    await expect_error(
        stub.DeletePushSubscription(
            api.DeletePushSubscriptionRequest(customer_id="me", id=created.id),
            metadata=customer(tokens, other),
        ),
        grpc.StatusCode.NOT_FOUND,
        "PUSH_SUBSCRIPTION_NOT_FOUND",
    )
    await expect_error(
        stub.ListPushSubscriptions(
            api.ListPushSubscriptionsRequest(customer_id=hers), metadata=staff(tokens)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Bad input names the fields and stores nothing.
    bad = pb.PushSubscription(endpoint="http://push.example.com/x", p256dh="short", auth="")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePushSubscription(
            api.CreatePushSubscriptionRequest(customer_id="me", subscription=bad),
            metadata=customer(tokens, hers),
        )
    details = decode_error(caught.value)
    assert details.reason == "PUSH_SUBSCRIPTION_INVALID"
    assert {v.field for v in details.field_violations} == {
        "subscription.endpoint",
        "subscription.p256dh",
        "subscription.auth",
    }
    # Registered side by side, at most MAX_PER_CUSTOMER are kept.
    await asyncio.gather(
        *(
            stub.CreatePushSubscription(
                api.CreatePushSubscriptionRequest(customer_id="me", subscription=subscription(n)),
                metadata=customer(tokens, hers),
            )
            for n in range(1, MAX_PER_CUSTOMER + 3)
        )
    )
    listed = await stub.ListPushSubscriptions(
        api.ListPushSubscriptionsRequest(customer_id="me"), metadata=customer(tokens, hers)
    )
    assert len(listed.subscriptions) == MAX_PER_CUSTOMER
    assert created.id not in {s.id for s in listed.subscriptions}  # the oldest went
    await stub.DeletePushSubscription(
        api.DeletePushSubscriptionRequest(customer_id="me", id=listed.subscriptions[0].id),
        metadata=customer(tokens, hers),
    )
    again = await stub.ListPushSubscriptions(
        api.ListPushSubscriptionsRequest(customer_id="me"), metadata=customer(tokens, hers)
    )
    assert len(again.subscriptions) == MAX_PER_CUSTOMER - 1


async def test_a_push_message_reaches_a_registered_subscription(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    _, stub = service
    template = pb.Template(
        key=f"push-{uuid.uuid4().hex[:6]}",
        channel=PUSH,
        language="ja",
        category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
        subject="Tenpo",
        text_body="ご注文を承りました",
    )
    await stub.CreateTemplate(
        api.CreateTemplateRequest(template=template, request_id=str(uuid.uuid4())),
        metadata=staff(tokens),
    )
    unsubscribed, subscribed = harness.directory.add(), harness.directory.add()
    await stub.CreatePushSubscription(
        api.CreatePushSubscriptionRequest(customer_id="me", subscription=subscription()),
        metadata=customer(tokens, subscribed),
    )
    answers = {}
    for who in (unsubscribed, subscribed):
        request = api.SendMessageRequest(
            customer_id=who, template_key=template.key, channel=PUSH, request_id=str(uuid.uuid4())
        )
        answers[who] = (await stub.SendMessage(request, metadata=service_caller(tokens))).message
    assert (answers[unsubscribed].status, answers[unsubscribed].status_reason) == (
        pb.MESSAGE_STATUS_SKIPPED,
        "UNREACHABLE",
    )

    async def sent() -> None:
        got = await stub.GetMessage(
            api.GetMessageRequest(id=answers[subscribed].id), metadata=staff(tokens)
        )
        assert got.message.status == pb.MESSAGE_STATUS_SENT

    await eventually(sent)


async def test_the_dev_inbox_lists_newest_first_in_pages(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    _, stub = service
    who = harness.directory.add(phone="+819012121212")
    ids = [(await sent_message(stub, tokens, who, SMS)).id for _ in range(3)]
    first = await stub.ListMessages(
        api.ListMessagesRequest(customer_id=who, page_size=2), metadata=staff(tokens)
    )
    second = await stub.ListMessages(
        api.ListMessagesRequest(customer_id=who, page_size=2, page_token=first.next_page_token),
        metadata=staff(tokens),
    )
    assert [m.id for m in [*first.messages, *second.messages]] == list(reversed(ids))
    assert second.next_page_token == ""
    await expect_error(
        stub.ListMessages(api.ListMessagesRequest(), metadata=customer(tokens, who)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
