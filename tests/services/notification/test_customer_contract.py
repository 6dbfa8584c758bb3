"""The consumers of the customer service's id-only events (subscribers/mail_tokens.py), over
NATS: registration starts the welcome journey, an announced reset mail is sent with the
secret IssueMailToken issues. They need that contract in the generated protos (branch
``customer``); until it is merged they are not subscribed, which the first test checks."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.notification.config import NotificationSettings
from services.notification.customers import MailToken
from services.notification.subscribers.mail_tokens import CONTRACT_READY
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.kit.events import EventBus
from tenpo.kit.server import ServiceHost
from tests.services.notification.conftest import Harness, Stub, eventually, publish

Service = tuple[ServiceHost[NotificationSettings], Stub]
needs_contract = pytest.mark.skipif(
    not CONTRACT_READY, reason="the customer service's id-only events are not merged yet"
)


def test_the_mail_consumers_follow_the_contract(service: Service) -> None:
    host, _ = service
    assert host.runtime is not None
    durables = [s.durable for s in host.runtime.subscriptions]
    assert any(d.endswith("-mail") for d in durables) is CONTRACT_READY


@needs_contract
async def test_registration_starts_the_welcome_journey(
    harness: Harness, service: Service, customer_bus: EventBus
) -> None:
    customer = harness.directory.add()
    registered: Any = customer_events.CustomerRegistered()
    registered.customer_id = customer
    await publish(customer_bus, registered)

    async def welcomed() -> None:
        assert len(harness.catcher.to(harness.directory.contacts[customer].email)) == 1

    await eventually(welcomed)


@needs_contract
async def test_announced_reset_mail_is_sent_with_the_issued_secret(
    harness: Harness, service: Service, customer_bus: EventBus
) -> None:
    customer = str(uuid.uuid4())
    token_id = str(uuid.uuid4())
    harness.directory.tokens[token_id] = MailToken(
        customer, "issued-secret-1", "owner@example.jp", "ja-JP", "花子"
    )
    announced: Any = customer_events.PasswordResetRequested(customer_id=customer)
    announced.token_id = token_id
    await publish(customer_bus, announced)

    async def mailed() -> None:
        assert len(harness.catcher.to("owner@example.jp")) == 1

    await eventually(mailed)
    body = harness.catcher.to("owner@example.jp")[0].parsed().get_body(("plain",))
    assert body is not None
    assert "token=issued-secret-1" in body.get_content()
    assert harness.directory.issued.count(token_id) == 1
