"""Outgoing calls to the customer service: a recipient's contact details (GetCustomer), as
this service with its own token. Every call has a deadline; a customer service that does
not answer is Unavailable, so the event that needed it is redelivered later."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, cast

import grpc

from tenpo.customer.v1 import customer_service_pb2 as customer_api
from tenpo.customer.v1 import customer_service_pb2_grpc as customer_grpc
from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import TokenSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contact:
    customer_id: str
    email: str
    phone: str
    locale: str
    given_name: str = ""


@dataclass(frozen=True)
class MailToken:
    """What IssueMailToken answers: never logged, never stored."""

    customer_id: str
    token: str
    email: str
    locale: str
    given_name: str = ""


class CustomerDirectory(Protocol):
    async def contact(self, customer_id: str) -> Contact | None:
        """The customer's contact details; None if erased or unknown."""
        ...

    async def mail_token(self, token_id: str) -> MailToken | None:
        """The secret and address of a mail announced by an event; None when it can no
        longer be sent (spent, superseded, erased)."""
        ...


class GrpcCustomerDirectory:
    """``channel`` None: no customer service is configured (every call is Unavailable).
    Calls carry the service's own token (``tokens``: client credentials)."""

    def __init__(
        self, channel: grpc.aio.Channel | None, tokens: TokenSource, timeout_seconds: float
    ) -> None:
        self._channel = channel
        self.tokens = tokens
        self.timeout_seconds = timeout_seconds

    def _get_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise Unavailable(
                "no customer service is configured (customer_target)",
                reason="CUSTOMER_NOT_CONFIGURED",
            )
        return self._channel

    async def contact(self, customer_id: str) -> Contact | None:
        stub = customer_grpc.CustomerServiceStub(self._get_channel())
        try:
            call = stub.GetCustomer(
                customer_api.GetCustomerRequest(customer_id=customer_id),
                timeout=self.timeout_seconds,
                metadata=await self.tokens.metadata(),
            )
            response = await cast("Awaitable[customer_api.GetCustomerResponse]", call)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            if error.code() is grpc.StatusCode.UNAUTHENTICATED:
                self.tokens.invalidate()  # expired or rotated: sign in again next time
            log.warning("customer lookup failed", extra={"code": error.code().name})
            raise Unavailable(
                "the customer service did not answer", reason="CUSTOMER_UNAVAILABLE"
            ) from None
        customer = response.customer
        return Contact(
            customer_id=customer.id,
            email=customer.email,
            phone=customer.phone_number,
            locale=customer.locale,
            given_name=customer.name.given_name,
        )

    async def mail_token(self, token_id: str) -> MailToken | None:
        # IssueMailToken exists once the customer service's id-only events are merged; the
        # adapter for it lives with the consumers of that contract (subscribers/mail_tokens).
        from services.notification.subscribers.mail_tokens import issue_mail_token

        return await issue_mail_token(
            self._get_channel(), token_id, self.timeout_seconds, await self.tokens.metadata()
        )
