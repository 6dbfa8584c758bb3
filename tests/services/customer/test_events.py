"""Customer events carry ids, never personal data or secrets: the TENPO_CUSTOMER stream keeps
them for days, after an erasure too. The mailer gets a mail's secret and address by RPC."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import nats
import sqlalchemy as sa
from google.protobuf.descriptor import Descriptor
from nats.js.api import DeliverPolicy

from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.kit.db import outbox_table
from tests.services.conftest import Tokens
from tests.services.customer.conftest import PASSWORD, Service, bearer, expect_error
from tests.services.customer.test_privacy_api import rich_customer

#: Field names and message types that would carry personal data or secrets.
PERSONAL_FIELDS = {
    "email",
    "token",
    "secret",
    "password",
    "name",
    "family_name",
    "given_name",
    "phone_number",
    "birthday",
    "postal_address",
    "address_lines",
    "recipient",
    "locale",
}
PERSONAL_TYPES = {
    "tenpo.customer.v1.Customer",
    "tenpo.customer.v1.PersonName",
    "tenpo.customer.v1.Address",
    "tenpo.common.v1.PostalAddress",
    "google.type.Date",
}
MAIL_EVENTS = (
    events_pb2.EmailVerificationRequested,
    events_pb2.ConsentConfirmationRequested,
    events_pb2.PasswordResetRequested,
)


def _fields(message: Descriptor, prefix: str = "") -> list[tuple[str, str]]:
    """(path, type name) of every field, nested messages included."""
    found = []
    for field in message.fields:
        path = f"{prefix}{field.name}"
        if field.message_type is not None:
            found.append((path, field.message_type.full_name))
            if not field.message_type.full_name.startswith("google.protobuf."):
                found.extend(_fields(field.message_type, path + "."))
        else:
            found.append((path, ""))
    return found


def test_no_event_has_a_field_for_personal_data_or_secrets() -> None:
    offending = [
        (message.name, path)
        for message in events_pb2.DESCRIPTOR.message_types_by_name.values()
        for path, type_name in _fields(message)
        if path.rsplit(".", 1)[-1] in PERSONAL_FIELDS or type_name in PERSONAL_TYPES
    ]
    assert offending == []
    assert len(events_pb2.DESCRIPTOR.message_types_by_name) == 13  # a new event is checked too


async def _wait_published(service: Service) -> None:
    for _ in range(200):
        async with service.db.engine.connect() as conn:
            pending = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar_one()
        if pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox relay did not publish")


async def _stream_payloads(nats_url: str, needle: str) -> dict[str, list[bytes]]:
    """Payloads on the TENPO_CUSTOMER stream that mention ``needle``, by event type."""
    connection = await nats.connect(nats_url)
    found: dict[str, list[bytes]] = {}
    try:
        js = connection.jetstream()
        subscription = await js.subscribe(
            "tenpo.customer.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        while True:
            message = await subscription.next_msg(timeout=5)
            if needle.encode() in message.data:
                event_type = (message.headers or {}).get("Tenpo-Event-Type", "")
                found.setdefault(event_type.rsplit(".", 1)[-1], []).append(message.data)
            if message.metadata.num_pending == 0:
                break
        await subscription.unsubscribe()
    finally:
        await connection.close()
    return found


async def test_the_stream_holds_no_personal_data_or_secret_after_an_erasure(
    service: Service, tokens: Tokens, nats_url: str
) -> None:
    person = await rich_customer(service, tokens, "stream")
    customer_id = person["id"]
    mails = [e for t in MAIL_EVENTS for e in await service.events(t, customer_id)]
    assert [type(e) for e in mails] == list(MAIL_EVENTS)
    secrets = [await service.mailed_token(e) for e in mails]
    await _wait_published(service)
    await service.customers.EraseCustomer(
        api.EraseCustomerRequest(customer_id="me"), metadata=person["auth"]
    )
    await _wait_published(service)

    published = await _stream_payloads(nats_url, customer_id)
    assert set(published) >= {
        "CustomerRegistered",
        "CustomerUpdated",
        "ConsentChanged",
        "EmailVerificationRequested",
        "ConsentConfirmationRequested",
        "PasswordResetRequested",
        "CustomerErased",
    }
    needles = [*person["personal"], *secrets, person["refresh_token"], PASSWORD]
    leaks = [
        (event_type, needle)
        for event_type, payloads in published.items()
        for payload in payloads
        for needle in needles
        if needle.encode() in payload
    ]
    assert leaks == []


async def test_the_mailer_gets_the_secret_and_address_once_per_issue(
    service: Service, tokens: Tokens
) -> None:
    customer_id, email, _ = await service.register("mailer")
    [verification] = await service.events(events_pb2.EmailVerificationRequested, customer_id)
    first = await service.mailed(verification)
    assert (first.customer_id, first.email, first.locale) == (customer_id, email, "ja-JP")
    assert first.name.family_name == "山田" and first.expire_time.seconds > 0
    # Issuing again (a redelivered event) draws a new secret; only the latest link works.
    second = await service.mailed_token(verification)
    assert second != first.token
    await expect_error(
        service.identity.VerifyEmail(ids.VerifyEmailRequest(token=first.token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VERIFICATION_TOKEN_INVALID",
    )
    await service.identity.VerifyEmail(ids.VerifyEmailRequest(token=second))
    # Used: nothing more to send.
    await expect_error(
        service.mailed(verification), grpc.StatusCode.FAILED_PRECONDITION, "MAIL_TOKEN_SPENT"
    )


async def test_only_services_with_mail_send_receive_mail_secrets(
    service: Service, tokens: Tokens
) -> None:
    customer_id, _, auth = await service.register("nosy")
    [verification] = await service.events(events_pb2.EmailVerificationRequested, customer_id)
    request = ids.IssueMailTokenRequest(token_id=verification.token_id)
    callers: list[tuple[Any, grpc.StatusCode]] = [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (auth, grpc.StatusCode.PERMISSION_DENIED),  # the customer themself
        (
            tokens.metadata(
                tokens.mint(subject="staff-1", kind="staff", scopes=["mail:send", "customers:read"])
            ),
            grpc.StatusCode.PERMISSION_DENIED,  # staff: not even with the scope
        ),
        (
            tokens.metadata(tokens.mint(subject="svc", kind="service", scopes=["customers:read"])),
            grpc.StatusCode.PERMISSION_DENIED,  # a service without mail:send
        ),
    ]
    for metadata, code in callers:
        await expect_error(service.identity.IssueMailToken(request, metadata=metadata), code)
    mailer = bearer(tokens.mint(subject="notification", kind="service", scopes=["mail:send"]))
    await expect_error(
        service.identity.IssueMailToken(
            ids.IssueMailTokenRequest(token_id="not-an-id"), metadata=mailer
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        service.identity.IssueMailToken(
            ids.IssueMailTokenRequest(token_id="00000000-0000-4000-8000-000000000000"),
            metadata=mailer,
        ),
        grpc.StatusCode.NOT_FOUND,
        "MAIL_TOKEN_NOT_FOUND",
    )
    # Erased: the token is gone with everything else.
    await service.customers.EraseCustomer(api.EraseCustomerRequest(customer_id="me"), metadata=auth)
    await expect_error(
        service.identity.IssueMailToken(request, metadata=mailer),
        grpc.StatusCode.NOT_FOUND,
        "MAIL_TOKEN_NOT_FOUND",
    )
