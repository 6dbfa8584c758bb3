"""Customer use cases: registration, sign-in with lockout, refresh-token rotation, sign-out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from services.customer import domain as d
from services.customer.security import new_secret
from services.customer.security import secret_hash as hash_secret
from services.customer.store.customers import Credentials, CustomerStore
from services.customer.store.privacy import purge_expired
from services.customer.store.staff import StaffStore, StaffUser
from services.customer.store.tokens import TokenStore
from services.customer.usecases.common import (
    Context,
    IssuedTokens,
    UseCase,
    bounded,
    customer_not_found,
    require_full_customer_session,
    subject_id,
    throttle_key,
)
from services.customer.usecases.lockout import SignInLockout
from services.customer.usecases.mail_tokens import MailTokens
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)


def self_service_channel(channel: int) -> int:
    """The channel a customer's own token may carry. The header naming it is the caller's
    word (checked by the gateway against a publishable key); in-store channels come only
    with a device hand-off, so a shopper cannot pose as a kiosk to see store-only things."""
    return channel if channel in (d.CHANNEL_WEB, d.CHANNEL_APP) else 0


class Sessions(UseCase):
    """Sign-up, sign-in (customers and staff), token refresh, sign-out, password change."""

    def __init__(self, context: Context, mail: MailTokens) -> None:
        super().__init__(context)
        self.mail = mail
        self.lockout = SignInLockout(context)

    async def _start_session(
        self,
        uow: UnitOfWork,
        *,
        subject_kind: d.SubjectKind,
        subject_id: uuid.UUID,
        kind: str,
        scopes: Sequence[str],
        channel: int,
        family_id: uuid.UUID | None = None,
    ) -> IssuedTokens:
        now = self.clock()
        refresh = new_secret()
        refresh_expires = now + self.policy.refresh_ttl
        await TokenStore(uow.session).add_refresh(
            token_hash=hash_secret(refresh),
            family_id=family_id or uuid.uuid4(),
            subject_kind=subject_kind,
            subject_id=subject_id,
            channel=channel,
            now=now,
            expires_at=refresh_expires,
        )
        access = self.keys.sign(
            subject=str(subject_id),
            kind=kind,
            now=now,
            ttl=self.policy.access_ttl,
            scopes=scopes,
            channel=d.CHANNEL_NAMES.get(channel),
        )
        return IssuedTokens(access, str(subject_id), refresh, refresh_expires)

    async def register(
        self,
        *,
        email: str,
        password: str,
        name: d.PersonName,
        locale: str,
        channel: int,
    ) -> tuple[d.Customer, IssuedTokens]:
        violations = d.Violations()
        normalized: d.Email | None = None
        try:
            normalized = d.normalize_email(email)
        except InvalidArgument as error:
            violations.absorb(error)
        try:
            d.validate_password(password, normalized.address if normalized else None)
        except InvalidArgument as error:
            violations.absorb(error)
        now = self.clock()
        customer = d.Customer(
            id=uuid.uuid4(),
            email=normalized.address if normalized else None,
            email_key=normalized.key if normalized else None,
            name=name,
            locale=locale or d.DEFAULT_LOCALE,
            created_at=now,
            updated_at=now,
        )
        d.validate_profile(customer, now.date(), violations)
        violations.raise_if_any("the registration is invalid", "REGISTRATION_INVALID")
        assert normalized is not None
        channel = self_service_channel(channel)
        password_hash = await self.passwords.hash(password)
        async with self.db.unit_of_work() as uow:
            if not await CustomerStore(uow.session).insert(customer, password_hash):
                raise AlreadyExists(
                    "this e-mail address is already registered",
                    reason="EMAIL_TAKEN",
                    field_violations=[FieldViolation("email", "already registered")],
                )
            uow.add_event(
                events_pb2.CustomerRegistered(
                    customer_id=str(customer.id),
                    channel=channel,  # type: ignore[arg-type]
                )
            )
            await self.mail.send_verification(uow, customer)
            tokens = await self._start_session(
                uow,
                subject_kind=d.SubjectKind.CUSTOMER,
                subject_id=customer.id,
                kind=PrincipalKind.CUSTOMER.value,
                scopes=d.CUSTOMER_SCOPES,
                channel=channel,
            )
            await uow.commit()
        return customer, tokens

    def _sign_in_key(self, kind: str, email: str, password: str) -> bytes:
        bounded(email, "email", d.MAX_EMAIL)
        bounded(password, "password", d.MAX_PASSWORD)
        email_key = d.email_lookup_key(email)
        if email_key is None:
            raise d.invalid("email", "not a valid e-mail address", "EMAIL_INVALID")
        return throttle_key(kind, email_key)

    async def sign_in(self, *, email: str, password: str, channel: int) -> IssuedTokens:
        channel = self_service_channel(channel)
        key = self._sign_in_key("customer", email, password)
        email_key = d.email_lookup_key(email)
        assert email_key is not None

        async def lookup(uow: UnitOfWork) -> tuple[str | None, Credentials | None]:
            credentials = await CustomerStore(uow.session).credentials_by_email(email_key)
            if credentials is None or credentials.state is not d.CustomerState.ACTIVE:
                return None, None
            return credentials.password_hash, credentials

        async def succeed(uow: UnitOfWork, credentials: Credentials, stored: str) -> IssuedTokens:
            if stored and self.passwords.needs_rehash(stored):
                new_hash = await self.passwords.hash(password)
                await CustomerStore(uow.session).set_password(credentials.id, new_hash)
            return await self._start_session(
                uow,
                subject_kind=d.SubjectKind.CUSTOMER,
                subject_id=credentials.id,
                kind=PrincipalKind.CUSTOMER.value,
                scopes=d.CUSTOMER_SCOPES,
                channel=channel,
            )

        return await self.lockout.attempt(key, password, lookup, succeed)

    async def sign_in_staff(self, *, email: str, password: str) -> IssuedTokens:
        key = self._sign_in_key("staff", email, password)
        email_key = d.email_lookup_key(email)
        assert email_key is not None

        async def lookup(uow: UnitOfWork) -> tuple[str | None, StaffUser | None]:
            staff = await StaffStore(uow.session).by_email(email_key)
            if staff is None or staff.disabled:
                return None, None
            return staff.password_hash, staff

        async def succeed(uow: UnitOfWork, staff: StaffUser, stored: str) -> IssuedTokens:
            return await self._start_session(
                uow,
                subject_kind=d.SubjectKind.STAFF,
                subject_id=staff.id,
                kind=PrincipalKind.STAFF.value,
                scopes=staff.scopes,
                channel=d.CHANNEL_BACK_OFFICE,
            )

        return await self.lockout.attempt(key, password, lookup, succeed)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        bounded(refresh_token, "refresh_token")
        invalid = Unauthenticated(
            "the refresh token is invalid or expired", reason="REFRESH_TOKEN_INVALID"
        )
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            tokens = TokenStore(uow.session)
            record = await tokens.refresh_by_hash(hash_secret(refresh_token))
            if record is None or record.revoked_at is not None:
                raise invalid
            if record.used_at is not None:
                # A spent token came back: either the client or a thief holds a copy, and we
                # cannot tell which. End the whole session; the owner signs in again.
                await tokens.revoke_family(record.family_id, now)
                await uow.commit()
                raise Unauthenticated(
                    "the refresh token was already used; the session is revoked",
                    reason="REFRESH_TOKEN_REUSED",
                )
            if record.expires_at <= now:
                raise invalid
            kind, scopes = await self._subject_grants(uow, record.subject_kind, record.subject_id)
            if kind is None:
                await tokens.revoke_family(record.family_id, now)
                await uow.commit()
                raise invalid
            await tokens.mark_used(record.id, now)
            issued = await self._start_session(
                uow,
                subject_kind=record.subject_kind,
                subject_id=record.subject_id,
                kind=kind,
                scopes=scopes,
                channel=record.channel,
                family_id=record.family_id,
            )
            await uow.commit()
        return issued

    async def _subject_grants(
        self, uow: UnitOfWork, kind: d.SubjectKind, subject_id: uuid.UUID
    ) -> tuple[str | None, Sequence[str]]:
        """Kind and scopes a session's subject has now (None: it may no longer sign in)."""
        if kind is d.SubjectKind.CUSTOMER:
            customer = await CustomerStore(uow.session).get(subject_id)
            if customer is None or customer.is_erased:
                return None, ()
            return PrincipalKind.CUSTOMER.value, d.CUSTOMER_SCOPES
        staff = await StaffStore(uow.session).get(subject_id)
        if staff is None or staff.disabled:
            return None, ()
        return PrincipalKind.STAFF.value, staff.scopes

    async def sign_out(self, principal: Principal, refresh_token: str, all_sessions: bool) -> None:
        bounded(refresh_token, "refresh_token")
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            tokens = TokenStore(uow.session)
            if all_sessions:
                principal.require_any_kind(PrincipalKind.CUSTOMER, PrincipalKind.STAFF)
                kind = (
                    d.SubjectKind.CUSTOMER
                    if principal.kind is PrincipalKind.CUSTOMER
                    else d.SubjectKind.STAFF
                )
                await tokens.revoke_subject(kind, subject_id(principal), now)
            elif refresh_token:
                # Holding the token is the proof; an unknown token signs nothing out, quietly.
                record = await tokens.refresh_by_hash(hash_secret(refresh_token))
                if record is not None:
                    await tokens.revoke_family(record.family_id, now)
            else:
                raise d.invalid("refresh_token", "a refresh token or all_sessions is required")
            await uow.commit()

    async def change_password(self, principal: Principal, current: str, new: str) -> None:
        customer_id = require_full_customer_session(principal)
        bounded(current, "current_password", d.MAX_PASSWORD)
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id)
            stored = await CustomerStore(uow.session).password_hash(customer_id)
        if customer is None or customer.is_erased:
            raise customer_not_found()
        if not await self.passwords.verify(stored, current):
            raise PermissionDenied("the current password is wrong", reason="PASSWORD_MISMATCH")
        d.validate_password(new, customer.email, "new_password")
        new_hash = await self.passwords.hash(new)
        async with self.db.unit_of_work() as uow:
            await CustomerStore(uow.session).set_password(customer_id, new_hash)
            await TokenStore(uow.session).revoke_subject(
                d.SubjectKind.CUSTOMER, customer_id, self.clock()
            )
            await uow.commit()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self.keys.jwks()

    async def purge_expired(self, grace: timedelta = timedelta(days=1)) -> dict[str, int]:
        """Drop expired tokens, hand-offs and stale lockout counters (after a grace period,
        so a just-expired refresh token still reads as expired rather than unknown)."""
        async with self.db.unit_of_work() as uow:
            deleted = await purge_expired(uow.session, self.clock() - grace)
            await uow.commit()
        return deleted
