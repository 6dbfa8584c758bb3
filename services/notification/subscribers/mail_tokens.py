"""Customer events of the id-only contract (customer branch: events carry ids, a mailer gets
a mail's secret and address from IdentityService.IssueMailToken with the mail:send scope).

Everything here depends on that contract; ``CONTRACT_READY`` says whether the generated
protos carry it, and the app subscribes only then. Nothing else needs to change when the
customer service's contract is merged."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from typing import Any, cast

import grpc

from services.notification.customers import MailToken
from services.notification.domain.templates import Channel
from services.notification.usecases.journeys import Journeys
from services.notification.usecases.messages import Messages
from services.notification.usecases.recipients import Recipients
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.customer.v1 import identity_service_pb2 as identity_api
from tenpo.customer.v1 import identity_service_pb2_grpc as identity_grpc
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import Unavailable
from tenpo.kit.events import Event, Subscription

log = logging.getLogger(__name__)

CONTRACT_READY = (
    "IssueMailTokenRequest" in identity_api.DESCRIPTOR.message_types_by_name
    and "token_id" in customer_events.PasswordResetRequested.DESCRIPTOR.fields_by_name
)

#: Which template each announced mail is sent with.
MAIL_TEMPLATES = {
    "tenpo.customer.v1.EmailVerificationRequested": "account.verify_email",
    "tenpo.customer.v1.PasswordResetRequested": "account.password_reset",
    "tenpo.customer.v1.ConsentConfirmationRequested": "account.confirm_consent",
}

ANNOUNCEMENTS: dict[str, type[Any]] = {
    t.DESCRIPTOR.full_name: t
    for t in (
        customer_events.EmailVerificationRequested,
        customer_events.PasswordResetRequested,
        customer_events.ConsentConfirmationRequested,
    )
}


async def issue_mail_token(
    channel: grpc.aio.Channel,
    token_id: str,
    timeout_seconds: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> MailToken | None:
    """IssueMailToken with a deadline: None when the mail can no longer be sent,
    Unavailable when the customer service does not answer (the send is retried)."""
    stub: Any = identity_grpc.IdentityServiceStub(channel)
    request: Any = getattr(identity_api, "IssueMailTokenRequest")(token_id=token_id)  # noqa: B009
    try:
        call = stub.IssueMailToken(request, timeout=timeout_seconds, metadata=metadata)
        response: Any = await cast("Awaitable[Any]", call)
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        log.warning("IssueMailToken failed", extra={"code": error.code().name})
        raise Unavailable(
            "the customer service did not answer", reason="CUSTOMER_UNAVAILABLE"
        ) from None
    return MailToken(
        customer_id=response.customer_id,
        token=response.token,
        email=response.email,
        locale=response.locale,
        given_name=response.name.given_name,
    )


def _field(message: Any, name: str) -> str:
    # Read by name: these fields exist only in the id-only contract.
    return str(getattr(message, name))


def mail_subscription(
    recipients: Recipients,
    messages: Messages,
    journeys: Journeys,
    durable: str = "notification-customer-mail",
) -> Subscription:
    async def registered(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(customer_events.CustomerRegistered)
        customer_id = uuid.UUID(_field(message, "customer_id"))
        # The welcome mail and its reminder are the seeded welcome journey's steps.
        await journeys.on_event(
            uow, event.event_type, customer_id, str(event.id), event.occurred_at
        )

    async def updated(uow: UnitOfWork, event: Event) -> None:
        message = event.parse(customer_events.CustomerUpdated)
        customer_id = uuid.UUID(_field(message, "customer_id"))
        await recipients.customer_changed(uow, customer_id)

    async def announced(uow: UnitOfWork, event: Event) -> None:
        message: Any = event.parse(ANNOUNCEMENTS[event.event_type])
        await messages.compose(
            uow,
            customer_id=uuid.UUID(message.customer_id),
            template_key=MAIL_TEMPLATES[event.event_type],
            channel=Channel.EMAIL,
            data={},
            dedupe_key=f"event:{event.id}",
            mail_token_id=_field(message, "token_id"),
        )

    return Subscription(
        durable=durable,
        source_service="customer",
        handlers={
            customer_events.CustomerRegistered: registered,
            customer_events.CustomerUpdated: updated,
            customer_events.EmailVerificationRequested: announced,
            customer_events.PasswordResetRequested: announced,
            customer_events.ConsentConfirmationRequested: announced,
        },
    )
