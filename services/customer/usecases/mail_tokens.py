"""Customer use cases: mailed single-use tokens (password reset, e-mail verification), whose
secrets only the mailer receives, by RPC, never in events."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.customer import convert
from services.customer import domain as d
from services.customer.security import new_secret
from services.customer.security import secret_hash as hash_secret
from services.customer.store.customers import CustomerStore
from services.customer.store.reset_requests import ResetRequestStore
from services.customer.store.throttle import ThrottleStore
from services.customer.store.tokens import TokenStore
from services.customer.usecases.common import (
    Context,
    UseCase,
    bounded,
    customer_not_found,
    require_full_customer_session,
    throttle_key,
)
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import FailedPrecondition, NotFound

log = logging.getLogger(__name__)
#: Another mail of the same kind is not sent sooner than this (silently).
MAIL_COOLDOWN = timedelta(seconds=60)


class MailTokens(UseCase):
    """Password reset and e-mail verification by single-use mailed tokens."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        #: Set when a reset request is queued: this replica's handler wakes at once.
        self.reset_requested = asyncio.Event()

    async def mail_token(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        purpose: d.TokenPurpose,
        ttl: timedelta,
        subject: Mapping[str, Any],
    ) -> tuple[uuid.UUID, datetime]:
        """A new mailed token: its id (for the event) and expiry. Its secret is drawn only
        when the mailer asks for it (``issue_mail_token``), so no secret ever sits in an
        event; until then the row holds the hash of a secret nobody knows."""
        now = self.clock()
        expires = now + ttl
        token_id = await TokenStore(uow.session).add_one_time(
            customer_id=customer.id,
            purpose=purpose,
            token_hash=hash_secret(new_secret()),
            subject=subject,
            now=now,
            expires_at=expires,
        )
        return token_id, expires

    async def send_verification(self, uow: UnitOfWork, customer: d.Customer) -> None:
        assert customer.email is not None
        token_id, expires = await self.mail_token(
            uow,
            customer,
            d.TokenPurpose.VERIFY_EMAIL,
            self.policy.verification_ttl,
            {"email_key": customer.email_key},
        )
        uow.add_event(
            events_pb2.EmailVerificationRequested(
                customer_id=str(customer.id),
                token_id=str(token_id),
                expire_time=convert.timestamp(expires),
            )
        )

    async def recently_mailed(
        self, uow: UnitOfWork, customer_id: uuid.UUID, purpose: d.TokenPurpose
    ) -> bool:
        latest = await TokenStore(uow.session).latest_one_time(customer_id, purpose)
        return latest is not None and self.clock() - latest < MAIL_COOLDOWN

    async def request_password_reset(self, email: str) -> None:
        """Queue a reset request. The answer does the same work whether the address is
        registered or not — one insert and one commit, no lookup, no hashing — so its timing
        cannot tell; ``handle_reset_requests`` mails the token (or nothing) afterwards."""
        bounded(email, "email", d.MAX_EMAIL)
        email_key = d.email_lookup_key(email)
        if email_key is None:
            raise d.invalid("email", "not a valid e-mail address", "EMAIL_INVALID")
        async with self.db.unit_of_work() as uow:
            await ResetRequestStore(uow.session).enqueue(email_key, self.clock())
            await uow.commit()
        self.reset_requested.set()

    async def handle_reset_requests(self) -> int:
        """Turn queued reset requests into mailed tokens, oldest first, until none is left
        (several replicas may run this at once); returns how many were handled."""
        handled = 0
        while await self._handle_oldest_reset_request():
            handled += 1
        return handled

    async def _handle_oldest_reset_request(self) -> bool:
        async with self.db.unit_of_work() as uow:
            queue = ResetRequestStore(uow.session)
            request = await queue.claim_oldest()
            if request is None:
                return False
            event = None
            try:
                async with uow.session.begin_nested():
                    event = await self._mail_reset(uow, request.email_key)
            except Exception as error:
                # A request that cannot be handled is dropped (the customer may ask again)
                # rather than blocking the queue; the savepoint takes back what it wrote. A
                # database outage fails the commit below instead, and the request stays.
                # Only the error's type is logged: database errors quote their parameters,
                # here an e-mail address.
                log.error(
                    "password reset request dropped",
                    extra={"seq": request.seq, "error": type(error).__name__},
                )
            if event is not None:
                uow.add_event(event)
            await queue.delete(request.seq)
            await uow.commit()
        return True

    async def _mail_reset(
        self, uow: UnitOfWork, email_key: str
    ) -> events_pb2.PasswordResetRequested | None:
        """The token for a reset request and the event announcing it (added by the caller
        once the savepoint holds); None for an unknown, inactive or recently mailed address."""
        store = CustomerStore(uow.session)
        credentials = await store.credentials_by_email(email_key)
        if credentials is None or credentials.state is not d.CustomerState.ACTIVE:
            return None
        customer = await store.get(credentials.id, for_update=True)
        if customer is None or await self.recently_mailed(
            uow, customer.id, d.TokenPurpose.RESET_PASSWORD
        ):
            return None
        token_id, expires = await self.mail_token(
            uow, customer, d.TokenPurpose.RESET_PASSWORD, self.policy.reset_ttl, {}
        )
        return events_pb2.PasswordResetRequested(
            customer_id=str(customer.id),
            token_id=str(token_id),
            expire_time=convert.timestamp(expires),
        )

    async def redeem(
        self, uow: UnitOfWork, token: str, purpose: d.TokenPurpose, reason: str
    ) -> tuple[d.Customer, Mapping[str, Any]]:
        """A mailed token's customer and subject, the token marked used; or InvalidArgument
        (unknown, used, expired, or another purpose: all look the same)."""
        bounded(token, "token")
        record = (
            await TokenStore(uow.session).one_time_by_hash(hash_secret(token)) if token else None
        )
        now = self.clock()
        customer = None
        if (
            record is not None
            and record.purpose is purpose
            and record.used_at is None
            and record.expires_at > now
        ):
            customer = await CustomerStore(uow.session).get(record.customer_id, for_update=True)
        if record is None or customer is None or customer.is_erased:
            raise d.invalid("token", "invalid, used or expired", reason)
        await TokenStore(uow.session).use_one_time(record.id, now)
        return customer, record.subject

    async def reset_password(self, token: str, new_password: str) -> None:
        async with self.db.unit_of_work() as uow:
            customer, _ = await self.redeem(
                uow, token, d.TokenPurpose.RESET_PASSWORD, "RESET_TOKEN_INVALID"
            )
            d.validate_password(new_password, customer.email, "new_password")
            new_hash = await self.passwords.hash(new_password)
            now = self.clock()
            tokens = TokenStore(uow.session)
            await CustomerStore(uow.session).set_password(customer.id, new_hash)
            await tokens.spend_all(customer.id, d.TokenPurpose.RESET_PASSWORD, now)
            await tokens.revoke_subject(d.SubjectKind.CUSTOMER, customer.id, now)
            if customer.email_key:
                await ThrottleStore(uow.session).clear(throttle_key("customer", customer.email_key))
            await uow.commit()

    async def request_email_verification(self, principal: Principal) -> None:
        customer_id = require_full_customer_session(principal)
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id, for_update=True)
            if customer is None or customer.is_erased:
                raise customer_not_found()
            if customer.email_verified:
                raise FailedPrecondition(
                    "the e-mail address is already verified", reason="EMAIL_ALREADY_VERIFIED"
                )
            if await self.recently_mailed(uow, customer.id, d.TokenPurpose.VERIFY_EMAIL):
                return
            await self.send_verification(uow, customer)
            await uow.commit()

    async def verify_email(self, token: str) -> uuid.UUID:
        async with self.db.unit_of_work() as uow:
            customer, subject = await self.redeem(
                uow, token, d.TokenPurpose.VERIFY_EMAIL, "VERIFICATION_TOKEN_INVALID"
            )
            if subject.get("email_key") != customer.email_key:
                # The address changed after the mail went out; this token proves nothing.
                raise d.invalid("token", "invalid, used or expired", "VERIFICATION_TOKEN_INVALID")
            if not customer.email_verified:
                updated = replace(
                    customer,
                    email_verified=True,
                    version=customer.version + 1,
                    updated_at=self.clock(),
                )
                await CustomerStore(uow.session).update(updated)
                uow.add_event(
                    events_pb2.CustomerUpdated(
                        customer_id=str(updated.id), changed_fields=["email_verified"]
                    )
                )
            await uow.commit()
        return customer.id

    async def issue_mail_token(
        self, principal: Principal, token_id: str
    ) -> tuple[d.Customer, str, datetime]:
        """For the mailer: the customer, a fresh secret for the mailed token ``token_id``
        (the one issued before stops working) and its expiry."""
        principal.require_any_kind(PrincipalKind.SERVICE)
        principal.require_scope(d.MAIL_SCOPE)
        record_id = convert.parse_id(token_id, "token_id")
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            tokens = TokenStore(uow.session)
            record = await tokens.one_time_by_id(record_id)
            customer = (
                await CustomerStore(uow.session).get(record.customer_id)
                if record is not None
                else None
            )
            if record is None or customer is None or customer.is_erased:
                raise NotFound("no such mailed token", reason="MAIL_TOKEN_NOT_FOUND")
            stale_address = (
                record.purpose is d.TokenPurpose.VERIFY_EMAIL
                and record.subject.get("email_key") != customer.email_key
            )
            if record.used_at is not None or record.expires_at <= now or stale_address:
                raise FailedPrecondition(
                    "the mailed token is used, expired or superseded", reason="MAIL_TOKEN_SPENT"
                )
            secret = new_secret()
            await tokens.set_one_time_hash(record.id, hash_secret(secret))
            await uow.commit()
        return customer, secret, record.expires_at
