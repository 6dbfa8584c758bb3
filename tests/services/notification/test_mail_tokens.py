"""Account mails announced by the customer service's id-only events: the secret and the
address come from IssueMailToken at send time, the mail carries the link, the stored copy
never holds the secret."""

from __future__ import annotations

import uuid

from services.notification.config import NotificationSettings
from services.notification.customers import MailToken
from services.notification.domain.templates import Channel
from services.notification.store import FAILED, SENT, SKIPPED, MessageStore
from tenpo.kit.server import ServiceHost
from tests.services.notification.conftest import Harness, Stub, eventually

Service = tuple[ServiceHost[NotificationSettings], Stub]


async def announce(
    host: ServiceHost[NotificationSettings], customer: str, token_id: str, event_id: str
) -> uuid.UUID:
    """What the consumer of PasswordResetRequested does (subscribers/mail_tokens.py)."""
    assert host.runtime is not None
    messages = host.runtime.parts["messages"]
    async with host.runtime.db.unit_of_work() as uow:
        row = await messages.compose(
            uow,
            customer_id=uuid.UUID(customer),
            template_key="account.password_reset",
            channel=Channel.EMAIL,
            data={},
            dedupe_key=f"event:{event_id}",
            mail_token_id=token_id,
        )
        await uow.commit()
    messages.queued.set()
    return row.id  # type: ignore[no-any-return]


async def stored(host: ServiceHost[NotificationSettings], message_id: uuid.UUID) -> object:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        return await MessageStore(uow.session).get(message_id)


async def test_reset_mail_has_the_issued_secret_and_the_copy_does_not(
    harness: Harness, service: Service
) -> None:
    host, _ = service
    customer = str(uuid.uuid4())
    harness.directory.tokens["tok-1"] = MailToken(
        customer, "s3cret-XYZ", "reset@example.jp", "en-US", "Hanako"
    )
    message_id = await announce(host, customer, "tok-1", "e1")
    # A redelivered event makes no second message.
    assert await announce(host, customer, "tok-1", "e1") == message_id

    async def sent() -> None:
        row = await stored(host, message_id)
        assert row.status == SENT  # type: ignore[attr-defined]

    await eventually(sent)
    [mail] = harness.catcher.to("reset@example.jp")
    parsed = mail.parsed()
    assert parsed["Subject"] == "Tenpo: Reset your password"
    text = parsed.get_body(("plain",))
    assert text is not None
    assert "http://localhost:3000/account/reset-password?token=s3cret-XYZ" in text.get_content()
    row = await stored(host, message_id)
    assert row.to_address == "reset@example.jp"  # type: ignore[attr-defined]
    assert "s3cret" not in row.text_body + row.html_body  # type: ignore[attr-defined]
    assert "token=[redacted]" in row.text_body  # type: ignore[attr-defined]
    # Issued once (the redelivered event made no second message). Other tests' events on
    # the shared stream may reach this consumer too, so only this token is counted.
    assert harness.directory.issued.count("tok-1") == 1


async def test_a_spent_token_sends_nothing(harness: Harness, service: Service) -> None:
    host, _ = service
    message_id = await announce(host, str(uuid.uuid4()), "tok-gone", "e2")

    async def skipped() -> None:
        row = await stored(host, message_id)
        assert (row.status, row.status_reason) == (SKIPPED, "MAIL_TOKEN_SPENT")  # type: ignore[attr-defined]

    await eventually(skipped)
    assert harness.catcher.mails == []


async def test_customer_service_down_is_retried_not_dropped(
    harness: Harness, service: Service
) -> None:
    host, _ = service
    customer = str(uuid.uuid4())

    async def down(token_id: str) -> MailToken | None:
        from tenpo.kit.errors import Unavailable

        raise Unavailable("down", reason="CUSTOMER_UNAVAILABLE")

    harness.directory.mail_token = down  # type: ignore[method-assign]
    message_id = await announce(host, customer, "tok-later", "e3")

    async def retried() -> None:
        row = await stored(host, message_id)
        assert row.attempts >= 1  # type: ignore[attr-defined]
        assert row.status not in (SENT, SKIPPED, FAILED)  # type: ignore[attr-defined]

    await eventually(retried)
