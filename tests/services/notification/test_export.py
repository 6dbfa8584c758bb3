"""NotificationService.ExportCustomerData: its copy of her contact details and her messages
(without bodies: a mailed link may hold a single-use secret), nobody else's; the customer
herself or staff and services with customers:read."""

from __future__ import annotations

import json
import uuid

import grpc

from services.notification.config import NotificationSettings
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import FakeDirectory, Stub, expect_error
from tests.services.notification.test_messages_api import send, status_of

Service = tuple[ServiceHost[NotificationSettings], Stub]


def own_session(tokens: Tokens, subject: str) -> tuple[tuple[str, str], ...]:
    return tokens.metadata(
        tokens.mint(subject=subject, kind="customer", channel="APP", scopes=["profile:write"])
    )


async def test_a_customer_exports_her_contact_copy_and_messages_without_bodies(
    service: Service, tokens: Tokens, directory: FakeDirectory
) -> None:
    _, stub = service
    her = directory.add(phone="+819011112222")
    someone = directory.add()
    sent = await send(
        stub, tokens, her, "order_confirmation", pb.MESSAGE_CHANNEL_SMS, order_number="A-7"
    )
    await status_of(stub, tokens, sent.id, pb.MESSAGE_STATUS_SENT)
    await send(
        stub, tokens, someone, "order_confirmation", pb.MESSAGE_CHANNEL_SMS, order_number="B-8"
    )

    exported = await stub.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id="me"), metadata=own_session(tokens, her)
    )
    document = json.loads(exported.json)
    assert (document["service"], document["customer_id"]) == ("notification", her)
    tables = document["tables"]
    [contact] = tables["contacts"]
    assert contact["phone"] == "+819011112222"
    [message] = tables["messages"]
    assert (message["id"], message["template_key"]) == (sent.id, "order_confirmation")
    assert not {"text_body", "html_body", "data", "mail_token_id"} & set(message)
    assert "A-7" not in exported.json  # the body's words stay out
    assert someone not in exported.json

    by_staff = await stub.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id=her),
        metadata=tokens.metadata(
            tokens.mint(subject="staff-dpo", kind="staff", scopes=["customers:read"])
        ),
    )
    assert json.loads(by_staff.json)["tables"]["messages"][0]["id"] == sent.id
    await expect_error(
        stub.ExportCustomerData(
            api.ExportCustomerDataRequest(customer_id=her),
            metadata=own_session(tokens, str(uuid.uuid4())),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_RESOURCE_OWNER",
    )
