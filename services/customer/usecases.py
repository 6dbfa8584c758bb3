"""Customer use cases: one method per command or query; each owns its transaction."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, wrappers_pb2
from google.protobuf.message import Message

from services.customer import convert
from services.customer import domain as d
from services.customer.config import CustomerSettings
from services.customer.security import AccessToken, KeyRing, Passwords, new_secret, same_secret
from services.customer.security import secret_hash as hash_secret
from services.customer.store import (
    AddressStore,
    ClientStore,
    ConsentStore,
    CustomerStore,
    DeviceSessionStore,
    PrivacyStore,
    StaffStore,
    ThrottleStore,
    TokenStore,
    purge_expired,
)
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    check_etag,
)
from tenpo.kit.idempotency import idempotent

#: Another mail of the same kind is not sent sooner than this (silently).
MAIL_COOLDOWN = timedelta(seconds=60)
#: Live hand-off codes one device may hold at once.
MAX_LIVE_DEVICE_SESSIONS = 5
SELF = "me"
#: Event types that carry personal data: export shows them, erasure scrubs them.
EVENT_CLASSES: dict[str, type[Message]] = {
    m.DESCRIPTOR.full_name: m
    for m in (
        events_pb2.CustomerRegistered,
        events_pb2.CustomerUpdated,
        events_pb2.ConsentChanged,
        events_pb2.EmailVerificationRequested,
        events_pb2.PasswordResetRequested,
        events_pb2.ConsentConfirmationRequested,
    )
}
EVENT_TYPES = tuple(EVENT_CLASSES)


@dataclass(frozen=True)
class Policy:
    """The settings the use cases need, as durations."""

    access_ttl: timedelta
    refresh_ttl: timedelta
    client_ttl: timedelta
    device_session_token_ttl: timedelta
    device_code_ttl: timedelta
    poll_interval_seconds: int
    reset_ttl: timedelta
    verification_ttl: timedelta
    consent_confirmation_ttl: timedelta
    lockout_threshold: int
    lockout_base_seconds: float
    lockout_max_seconds: float

    @classmethod
    def from_settings(cls, s: CustomerSettings) -> Policy:
        return cls(
            access_ttl=timedelta(seconds=s.access_token_ttl_seconds),
            refresh_ttl=timedelta(seconds=s.refresh_token_ttl_seconds),
            client_ttl=timedelta(seconds=s.client_token_ttl_seconds),
            device_session_token_ttl=timedelta(seconds=s.device_session_token_ttl_seconds),
            device_code_ttl=timedelta(seconds=s.device_session_code_ttl_seconds),
            poll_interval_seconds=s.device_session_poll_interval_seconds,
            reset_ttl=timedelta(seconds=s.password_reset_ttl_seconds),
            verification_ttl=timedelta(seconds=s.email_verification_ttl_seconds),
            consent_confirmation_ttl=timedelta(seconds=s.consent_confirmation_ttl_seconds),
            lockout_threshold=s.lockout_threshold,
            lockout_base_seconds=s.lockout_base_seconds,
            lockout_max_seconds=s.lockout_max_seconds,
        )


@dataclass(frozen=True)
class IssuedTokens:
    access: AccessToken
    subject: str
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None


# ------------------------------------------------------------------------------ ownership


def acting_for(
    principal: Principal,
    customer_ref: str,
    *,
    customer_scope: str = "profile:read",
    staff_scope: str = d.READ_SCOPE,
    path: str = "customer_id",
) -> uuid.UUID:
    """The customer a call acts on, if the caller may (AIP-193: permission is checked
    before existence, so a stranger's id and a missing id look alike: PERMISSION_DENIED).

    Customers act on themselves with the customer scope (device-bound sessions only carry
    read scopes); staff and services need the staff scope; devices acting on their own
    credentials never act for a customer."""
    principal.require_authenticated()
    ref = customer_ref.strip()
    if not ref:
        raise d.invalid(path, "is required: a customer id, or 'me'", "CUSTOMER_ID_REQUIRED")
    if principal.kind is PrincipalKind.CUSTOMER:
        if ref not in (SELF, principal.subject):
            raise PermissionDenied(
                "a customer may only access their own data", reason="NOT_RESOURCE_OWNER"
            )
        principal.require_scope(customer_scope)
        return _subject_id(principal)
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(staff_scope)
    if ref == SELF:
        raise d.invalid(path, "staff must name the customer", "CUSTOMER_ID_REQUIRED")
    return convert.parse_id(ref, path)


def _subject_id(principal: Principal) -> uuid.UUID:
    """The account id of a customer or staff token issued here. Tokens minted elsewhere
    (the dev stack's staff token, a service's) name no account of ours."""
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        raise PermissionDenied(
            "the token's subject is not an account of this service", reason="UNKNOWN_ACCOUNT"
        ) from None


def _require_full_customer_session(principal: Principal) -> uuid.UUID:
    """The customer themself, signed in on their own device (not a hand-off session)."""
    principal.require_any_kind(PrincipalKind.CUSTOMER)
    if principal.session_device is not None:
        raise PermissionDenied(
            "a session handed to a device cannot do this", reason="DEVICE_SESSION_NOT_ALLOWED"
        )
    principal.require_scope("profile:write")
    return _subject_id(principal)


def _customer_not_found() -> NotFound:
    return NotFound("no such customer", reason="CUSTOMER_NOT_FOUND")


def _self_service_channel(channel: int) -> int:
    """The channel a customer's own token may carry. The header naming it is the caller's
    word (checked by the gateway against a publishable key); in-store channels come only
    with a device hand-off, so a shopper cannot pose as a kiosk to see store-only things."""
    return channel if channel in (d.CHANNEL_WEB, d.CHANNEL_APP) else 0


def _throttle_key(kind: str, email_key: str) -> bytes:
    return hashlib.sha256(f"{kind}:{email_key}".encode()).digest()


def _actor(principal: Principal) -> str:
    return principal.kind.value


def _bounded(value: str, path: str, limit: int = d.MAX_TOKEN_INPUT) -> str:
    if len(value) > limit:
        raise d.invalid(path, f"at most {limit} characters")
    return value


def _event_as_json(event_type: str, payload: bytes) -> dict[str, Any]:
    """An outbox payload for the export: the event as JSON, its mailed token (a live
    credential) withheld."""
    message_type = EVENT_CLASSES.get(event_type)
    if message_type is None:
        return {}
    document = json_format.MessageToDict(message_type.FromString(payload))
    if "token" in document:
        document["token"] = "(withheld)"  # noqa: S105 - a placeholder, not a secret
    return document


def _invalid_credentials() -> Unauthenticated:
    # Same words for an unknown e-mail, a wrong password and an erased account.
    return Unauthenticated("the e-mail or the password is wrong", reason="INVALID_CREDENTIALS")


# ------------------------------------------------------------------------------ identity


class Identity:
    """Sign-up, sign-in, sessions, mailed tokens, machine clients and device hand-offs."""

    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        passwords: Passwords,
        policy: Policy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.keys = keys
        self.passwords = passwords
        self.policy = policy
        self.clock = clock

    # -------------------------------------------------------------------- sessions

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
        channel = _self_service_channel(channel)
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
                    customer=convert.customer(customer),
                    channel=channel,  # type: ignore[arg-type]
                )
            )
            await self.send_verification(uow, customer)
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

    async def _check_lock(self, key: bytes) -> None:
        """Count this attempt before checking the password, under a row lock: parallel
        guesses cannot slip past the lock, and the lock stands before the slow hash."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            throttle = ThrottleStore(uow.session)
            attempts = await throttle.lock_row(key)
            if attempts.locked_until is not None and attempts.locked_until > now:
                retry_after = max(1, int((attempts.locked_until - now).total_seconds() + 0.999))
                raise ResourceExhausted(
                    f"too many failed sign-ins; locked, retry after {retry_after} s",
                    reason="SIGN_IN_LOCKED",
                    metadata={"retry_after_seconds": str(retry_after)},
                )
            failures = attempts.failures + 1
            lock = d.lockout_seconds(
                failures,
                threshold=self.policy.lockout_threshold,
                base=self.policy.lockout_base_seconds,
                maximum=self.policy.lockout_max_seconds,
            )
            await throttle.save(key, failures, now + timedelta(seconds=lock) if lock else None, now)
            await uow.commit()

    async def _clear_lock(self, uow: UnitOfWork, key: bytes) -> None:
        await ThrottleStore(uow.session).clear(key)

    def _sign_in_key(self, kind: str, email: str, password: str) -> bytes:
        _bounded(email, "email", d.MAX_EMAIL)
        _bounded(password, "password", d.MAX_PASSWORD)
        email_key = d.email_lookup_key(email)
        if email_key is None:
            raise d.invalid("email", "not a valid e-mail address", "EMAIL_INVALID")
        return _throttle_key(kind, email_key)

    async def sign_in(self, *, email: str, password: str, channel: int) -> IssuedTokens:
        channel = _self_service_channel(channel)
        key = self._sign_in_key("customer", email, password)
        email_key = d.email_lookup_key(email)
        assert email_key is not None
        await self._check_lock(key)
        async with self.db.unit_of_work() as uow:
            credentials = await CustomerStore(uow.session).credentials_by_email(email_key)
        usable = credentials is not None and credentials.state is d.CustomerState.ACTIVE
        stored = credentials.password_hash if usable and credentials else None
        if not await self.passwords.verify(stored, password) or credentials is None:
            raise _invalid_credentials()
        async with self.db.unit_of_work() as uow:
            await self._clear_lock(uow, key)
            if stored and self.passwords.needs_rehash(stored):
                new_hash = await self.passwords.hash(password)
                await CustomerStore(uow.session).set_password(credentials.id, new_hash)
            tokens = await self._start_session(
                uow,
                subject_kind=d.SubjectKind.CUSTOMER,
                subject_id=credentials.id,
                kind=PrincipalKind.CUSTOMER.value,
                scopes=d.CUSTOMER_SCOPES,
                channel=channel,
            )
            await uow.commit()
        return tokens

    async def sign_in_staff(self, *, email: str, password: str) -> IssuedTokens:
        key = self._sign_in_key("staff", email, password)
        email_key = d.email_lookup_key(email)
        assert email_key is not None
        await self._check_lock(key)
        async with self.db.unit_of_work() as uow:
            staff = await StaffStore(uow.session).by_email(email_key)
        stored = staff.password_hash if staff is not None and not staff.disabled else None
        if not await self.passwords.verify(stored, password) or staff is None:
            raise _invalid_credentials()
        async with self.db.unit_of_work() as uow:
            await self._clear_lock(uow, key)
            tokens = await self._start_session(
                uow,
                subject_kind=d.SubjectKind.STAFF,
                subject_id=staff.id,
                kind=PrincipalKind.STAFF.value,
                scopes=staff.scopes,
                channel=d.CHANNEL_BACK_OFFICE,
            )
            await uow.commit()
        return tokens

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        _bounded(refresh_token, "refresh_token")
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
        _bounded(refresh_token, "refresh_token")
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
                await tokens.revoke_subject(kind, _subject_id(principal), now)
            elif refresh_token:
                # Holding the token is the proof; an unknown token signs nothing out, quietly.
                record = await tokens.refresh_by_hash(hash_secret(refresh_token))
                if record is not None:
                    await tokens.revoke_family(record.family_id, now)
            else:
                raise d.invalid("refresh_token", "a refresh token or all_sessions is required")
            await uow.commit()

    async def change_password(self, principal: Principal, current: str, new: str) -> None:
        customer_id = _require_full_customer_session(principal)
        _bounded(current, "current_password", d.MAX_PASSWORD)
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id)
            stored = await CustomerStore(uow.session).password_hash(customer_id)
        if customer is None or customer.is_erased:
            raise _customer_not_found()
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

    # ---------------------------------------------------------------- mailed tokens

    async def mail_token(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        purpose: d.TokenPurpose,
        ttl: timedelta,
        subject: Mapping[str, Any],
    ) -> tuple[str, datetime]:
        now = self.clock()
        token = new_secret()
        expires = now + ttl
        await TokenStore(uow.session).add_one_time(
            customer_id=customer.id,
            purpose=purpose,
            token_hash=hash_secret(token),
            subject=subject,
            now=now,
            expires_at=expires,
        )
        return token, expires

    async def send_verification(self, uow: UnitOfWork, customer: d.Customer) -> None:
        assert customer.email is not None
        token, expires = await self.mail_token(
            uow,
            customer,
            d.TokenPurpose.VERIFY_EMAIL,
            self.policy.verification_ttl,
            {"email_key": customer.email_key},
        )
        uow.add_event(
            events_pb2.EmailVerificationRequested(
                customer_id=str(customer.id),
                email=customer.email,
                token=token,
                expire_time=convert.timestamp(expires),
                locale=customer.locale,
            )
        )

    async def _recently_mailed(
        self, uow: UnitOfWork, customer_id: uuid.UUID, purpose: d.TokenPurpose
    ) -> bool:
        latest = await TokenStore(uow.session).latest_one_time(customer_id, purpose)
        return latest is not None and self.clock() - latest < MAIL_COOLDOWN

    async def request_password_reset(self, email: str) -> None:
        _bounded(email, "email", d.MAX_EMAIL)
        email_key = d.email_lookup_key(email)
        if email_key is None:
            raise d.invalid("email", "not a valid e-mail address", "EMAIL_INVALID")
        async with self.db.unit_of_work() as uow:
            store = CustomerStore(uow.session)
            credentials = await store.credentials_by_email(email_key)
            if credentials is None or credentials.state is not d.CustomerState.ACTIVE:
                return  # the same empty answer as for a known address
            customer = await store.get(credentials.id, for_update=True)
            assert customer is not None
            assert customer.email is not None
            if await self._recently_mailed(uow, customer.id, d.TokenPurpose.RESET_PASSWORD):
                return
            token, expires = await self.mail_token(
                uow, customer, d.TokenPurpose.RESET_PASSWORD, self.policy.reset_ttl, {}
            )
            uow.add_event(
                events_pb2.PasswordResetRequested(
                    customer_id=str(customer.id),
                    email=customer.email,
                    token=token,
                    expire_time=convert.timestamp(expires),
                    locale=customer.locale,
                )
            )
            await uow.commit()

    async def redeem(
        self, uow: UnitOfWork, token: str, purpose: d.TokenPurpose, reason: str
    ) -> tuple[d.Customer, Mapping[str, Any]]:
        """A mailed token's customer and subject, the token marked used; or InvalidArgument
        (unknown, used, expired, or another purpose: all look the same)."""
        _bounded(token, "token")
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
                await self._clear_lock(uow, _throttle_key("customer", customer.email_key))
            await uow.commit()

    async def request_email_verification(self, principal: Principal) -> None:
        customer_id = _require_full_customer_session(principal)
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id, for_update=True)
            if customer is None or customer.is_erased:
                raise _customer_not_found()
            if customer.email_verified:
                raise FailedPrecondition(
                    "the e-mail address is already verified", reason="EMAIL_ALREADY_VERIFIED"
                )
            if await self._recently_mailed(uow, customer.id, d.TokenPurpose.VERIFY_EMAIL):
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
                        customer=convert.customer(updated), changed_fields=["email_verified"]
                    )
                )
            await uow.commit()
        return customer.id

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self.keys.jwks()

    # --------------------------------------------------------------------- clients

    async def create_client(
        self,
        principal: Principal,
        *,
        display_name: str,
        kind: d.ClientKind,
        store_id: str | None,
        scopes: Sequence[str],
    ) -> tuple[d.Client, str]:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        unique_scopes = tuple(dict.fromkeys(scopes))
        d.validate_client(display_name, kind, store_id, unique_scopes, principal.scopes)
        return await self._create_client(
            display_name.strip(), kind, store_id, unique_scopes, principal.subject
        )

    async def _create_client(
        self,
        display_name: str,
        kind: d.ClientKind,
        store_id: str | None,
        scopes: Sequence[str],
        created_by: str,
    ) -> tuple[d.Client, str]:
        client = d.Client(
            id=f"cl_{secrets.token_hex(10)}",
            display_name=display_name,
            kind=kind,
            store_id=store_id,
            scopes=tuple(scopes),
            created_by=created_by,
            created_at=self.clock(),
        )
        secret = f"cs_{new_secret()}"
        async with self.db.unit_of_work() as uow:
            await ClientStore(uow.session).insert(client, hash_secret(secret))
            await uow.commit()
        return client, secret

    async def ensure_client(
        self, display_name: str, kind: d.ClientKind, store_id: str | None, scopes: Sequence[str]
    ) -> tuple[d.Client, str]:
        """Seed helper (development): the named client with a fresh secret."""
        async with self.db.unit_of_work() as uow:
            store = ClientStore(uow.session)
            existing = await store.find(kind, store_id, display_name)
            if existing is not None:
                secret = f"cs_{new_secret()}"
                await store.set_secret(existing.id, hash_secret(secret))
                await uow.commit()
                return existing, secret
        return await self._create_client(display_name, kind, store_id, scopes, "seed")

    async def list_clients(
        self,
        principal: Principal,
        *,
        store_id: str | None,
        show_revoked: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[d.Client]:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        async with self.db.unit_of_work() as uow:
            return await ClientStore(uow.session).list_page(
                store_id=store_id, show_revoked=show_revoked, after=after, limit=limit
            )

    async def revoke_client(self, principal: Principal, client_id: str) -> d.Client:
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(d.CLIENTS_SCOPE)
        _bounded(client_id, "client_id", 64)
        async with self.db.unit_of_work() as uow:
            store = ClientStore(uow.session)
            client = await store.get(client_id, for_update=True)
            if client is None:
                raise NotFound("no such client", reason="CLIENT_NOT_FOUND")
            if client.revoked_at is None:
                client = replace(client, revoked_at=self.clock())
                await store.revoke(client_id, client.revoked_at)  # type: ignore[arg-type]
            await uow.commit()
        return client

    async def sign_in_client(self, client_id: str, client_secret: str) -> IssuedTokens:
        _bounded(client_id, "client_id", 64)
        _bounded(client_secret, "client_secret", 128)
        async with self.db.unit_of_work() as uow:
            found = await ClientStore(uow.session).with_secret(client_id)
        # Compared even for unknown ids, so timing does not tell which ids exist.
        stored = found[1] if found else hash_secret(new_secret())
        if not same_secret(stored, client_secret) or found is None or found[0].revoked_at:
            raise Unauthenticated(
                "the client id or secret is wrong", reason="INVALID_CLIENT_CREDENTIALS"
            )
        client = found[0]
        access = self.keys.sign(
            subject=client.id,
            kind=client.kind.token_kind,
            now=self.clock(),
            ttl=self.policy.client_ttl,
            scopes=client.scopes,
            channel=d.CHANNEL_NAMES[client.channel],
            store_id=client.store_id,
        )
        return IssuedTokens(access, client.id)

    # ------------------------------------------------------------- device hand-off

    async def _live_device(self, uow: UnitOfWork, principal: Principal) -> d.Client:
        principal.require_any_kind(PrincipalKind.DEVICE)
        client = await ClientStore(uow.session).get(principal.subject)
        if client is None or client.revoked_at is not None or not client.kind.in_store:
            raise PermissionDenied("this device may not hand off sessions", reason="CLIENT_REVOKED")
        return client

    async def start_device_session(self, principal: Principal) -> tuple[d.DeviceSession, str]:
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            client = await self._live_device(uow, principal)
            store = DeviceSessionStore(uow.session)
            await store.purge_expired(client.id, now - timedelta(days=1))
            if await store.live_count(client.id, now) >= MAX_LIVE_DEVICE_SESSIONS:
                raise ResourceExhausted(
                    "too many open hand-offs on this device; wait for them to expire",
                    reason="TOO_MANY_DEVICE_SESSIONS",
                )
            device_code = new_secret()
            for _ in range(5):
                session = d.DeviceSession(
                    id=uuid.uuid4(),
                    client_id=client.id,
                    user_code=d.new_user_code(),
                    channel=client.channel,
                    store_id=client.store_id,
                    created_at=now,
                    expires_at=now + self.policy.device_code_ttl,
                )
                if await store.insert(session, hash_secret(device_code)):
                    break
            else:  # pragma: no cover - 20^8 codes make five collisions in a row absurd
                raise ResourceExhausted("no free hand-off code", reason="DEVICE_CODES_EXHAUSTED")
            await uow.commit()
        return session, device_code

    async def approve_device_session(
        self, principal: Principal, user_code: str
    ) -> tuple[d.DeviceSession, d.Client, datetime]:
        customer_id = _require_full_customer_session(principal)
        _bounded(user_code, "user_code", 32)
        code = d.normalize_user_code(user_code)
        if code is None:
            raise d.invalid("user_code", "a code like BDFH-KMPR", "USER_CODE_INVALID")
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            customer = await CustomerStore(uow.session).get(customer_id)
            if customer is None or customer.is_erased:
                raise _customer_not_found()
            store = DeviceSessionStore(uow.session)
            session = await store.by_user_code(code)
            if session is None:
                raise NotFound("no device shows this code", reason="DEVICE_SESSION_NOT_FOUND")
            if session.approved_by is not None:
                raise FailedPrecondition(
                    "this code was already approved", reason="DEVICE_SESSION_ALREADY_APPROVED"
                )
            if session.expired(now) or session.consumed_at is not None:
                raise FailedPrecondition("this code has expired", reason="DEVICE_SESSION_EXPIRED")
            client = await ClientStore(uow.session).get(session.client_id)
            if client is None or client.revoked_at is not None:
                raise FailedPrecondition("this device is no longer active", reason="CLIENT_REVOKED")
            await store.approve(session.id, customer_id, now)
            await uow.commit()
        latest_end = session.expires_at + self.policy.device_session_token_ttl
        return session, client, latest_end

    async def exchange_device_session(
        self, principal: Principal, device_code: str
    ) -> tuple[uuid.UUID, IssuedTokens] | None:
        """None while pending; the customer and their device-bound token once approved."""
        _bounded(device_code, "device_code", 128)
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            client = await self._live_device(uow, principal)
            store = DeviceSessionStore(uow.session)
            session = await store.by_device_code(hash_secret(device_code))
            # Another device's handle is as good as none: the handle alone proves nothing.
            if session is None or session.client_id != client.id:
                raise NotFound("no such hand-off", reason="DEVICE_SESSION_NOT_FOUND")
            if session.consumed_at is not None:
                raise FailedPrecondition(
                    "this hand-off was already used", reason="DEVICE_SESSION_CONSUMED"
                )
            if session.expired(now):
                raise FailedPrecondition(
                    "this hand-off has expired", reason="DEVICE_SESSION_EXPIRED"
                )
            if session.approved_by is None:
                return None
            customer = await CustomerStore(uow.session).get(session.approved_by)
            if customer is None or customer.is_erased:
                raise FailedPrecondition("the customer is gone", reason="DEVICE_SESSION_EXPIRED")
            await store.consume(session.id, now)
            access = self.keys.sign(
                subject=str(customer.id),
                kind=PrincipalKind.CUSTOMER.value,
                now=now,
                ttl=self.policy.device_session_token_ttl,
                scopes=d.DEVICE_SESSION_SCOPES,
                channel=d.CHANNEL_NAMES.get(session.channel),
                store_id=session.store_id,
                device=client.id,
            )
            await uow.commit()
        return customer.id, IssuedTokens(access, str(customer.id))

    # ---------------------------------------------------------------- housekeeping

    async def purge_expired(self, grace: timedelta = timedelta(days=1)) -> dict[str, int]:
        """Drop expired tokens, hand-offs and stale lockout counters (after a grace period,
        so a just-expired refresh token still reads as expired rather than unknown)."""
        async with self.db.unit_of_work() as uow:
            deleted = await purge_expired(uow.session, self.clock() - grace)
            await uow.commit()
        return deleted

    # ------------------------------------------------------------------------ seed

    async def ensure_staff(
        self, email: str, display_name: str, password: str, scopes: Sequence[str]
    ) -> None:
        normalized = d.normalize_email(email)
        password_hash = await self.passwords.hash(password)
        async with self.db.unit_of_work() as uow:
            await StaffStore(uow.session).upsert(normalized, display_name, password_hash, scopes)
            await uow.commit()


# ------------------------------------------------------------------------------ profiles


#: UpdateCustomer mask paths → domain fields they replace.
CUSTOMER_MASK = {
    "name": "name",
    "email": "email",
    "phone_number": "phone_number",
    "birthday": "birthday",
    "locale": "locale",
    "preferred_store_id": "preferred_store_id",
}
ADDRESS_MASK = ("label", "postal_address", "default_shipping", "default_billing")


class Profiles:
    """Profiles, address books, consents and GDPR requests."""

    def __init__(
        self,
        db: Database,
        identity: Identity,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.identity = identity
        self.clock = clock

    @property
    def policy(self) -> Policy:
        return self.identity.policy

    async def _load(
        self, uow: UnitOfWork, customer_id: uuid.UUID, principal: Principal, *, lock: bool = False
    ) -> d.Customer:
        customer = await CustomerStore(uow.session).get(customer_id, for_update=lock)
        # Staff may still see what remains of an erased customer; nobody may change it.
        if customer is None or (customer.is_erased and (lock or not principal.is_staff)):
            raise _customer_not_found()
        return customer

    # --------------------------------------------------------------------- profile

    async def get_customer(self, principal: Principal, customer_ref: str) -> d.Customer:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            return await self._load(uow, customer_id, principal)

    async def update_customer(
        self,
        principal: Principal,
        customer_ref: str,
        changes: Mapping[str, Any],
        *,
        etag: str,
    ) -> d.Customer:
        customer_id = acting_for(
            principal,
            customer_ref,
            customer_scope="profile:write",
            staff_scope=d.WRITE_SCOPE,
            path="customer.id",
        )
        if not changes:
            raise d.invalid("update_mask", "name at least one field", "UPDATE_MASK_INVALID")
        async with self.db.unit_of_work() as uow:
            store = CustomerStore(uow.session)
            current = await self._load(uow, customer_id, principal, lock=True)
            check_etag(etag, current.etag, "customer")
            fields = dict(changes)
            violations = d.Violations()
            email_changed = False
            if "email" in fields:
                try:
                    email = d.normalize_email(fields.pop("email"), "customer.email")
                except InvalidArgument as error:
                    violations.absorb(error)
                else:
                    if email.key != current.email_key:
                        if await store.email_taken(email.key, exclude=customer_id):
                            raise AlreadyExists(
                                "this e-mail address is already registered",
                                reason="EMAIL_TAKEN",
                                field_violations=[
                                    FieldViolation("customer.email", "already registered")
                                ],
                            )
                        email_changed = True
                    fields.update(email=email.address, email_key=email.key)
            if fields.get("phone_number"):
                try:
                    fields["phone_number"] = d.normalize_phone(
                        fields["phone_number"], "customer.phone_number"
                    )
                except InvalidArgument as error:
                    violations.absorb(error)
                    fields.pop("phone_number")
            now = self.clock()
            updated = replace(current, **fields, version=current.version + 1, updated_at=now)
            if email_changed:
                updated = replace(updated, email_verified=False)
            d.validate_profile(updated, now.date(), violations)
            violations.raise_if_any("the profile is invalid", "CUSTOMER_INVALID")
            await store.update(updated)
            changed = [name for name in CUSTOMER_MASK if name in changes]
            if email_changed:
                changed.append("email_verified")
                await self.identity.send_verification(uow, updated)
            uow.add_event(
                events_pb2.CustomerUpdated(
                    customer=convert.customer(updated), changed_fields=changed
                )
            )
            await uow.commit()
        return updated

    async def search_customers(
        self,
        principal: Principal,
        *,
        email: str,
        phone: str,
        name: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[d.Customer]:
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        principal.require_scope(d.READ_SCOPE)
        email_key = phone_e164 = folded = None
        if email.strip():
            email_key = d.normalize_email(email).key
        elif phone.strip():
            phone_e164 = d.normalize_phone(phone, "phone_number")
        elif name.strip():
            _bounded(name, "name", d.MAX_SEARCH_TEXT)
            folded = d.fold_for_search(name)
        else:
            raise d.invalid("email", "give an e-mail, a phone number or a name", "QUERY_REQUIRED")
        async with self.db.unit_of_work() as uow:
            return await CustomerStore(uow.session).search(
                email_key=email_key, phone=phone_e164, name=folded, after=after, limit=limit
            )

    # ------------------------------------------------------------------- addresses

    async def list_addresses(
        self,
        principal: Principal,
        customer_ref: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> tuple[d.Customer, list[d.Address]]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            customer = await self._load(uow, customer_id, principal)
            found = await AddressStore(uow.session).list_page(customer_id, after, limit)
        return customer, found

    async def create_address(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        label: str,
        postal: d.PostalAddress,
        default_shipping: bool,
        default_billing: bool,
        request_id: str,
        request: Message,
    ) -> tuple[d.Customer, d.Address]:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        label = d.validate_label(label, "address.label")
        normalized = d.normalize_address(postal, "address.postal_address")
        async with self.db.unit_of_work() as uow:
            customer = await self._load(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            now = self.clock()
            address = d.Address(uuid.uuid4(), customer_id, label, normalized, 1, now, now)

            async def create() -> wrappers_pb2.StringValue:
                nonlocal customer
                if await store.count(customer_id) >= d.MAX_ADDRESSES:
                    raise FailedPrecondition(
                        f"at most {d.MAX_ADDRESSES} addresses", reason="TOO_MANY_ADDRESSES"
                    )
                await store.insert(address)
                # The first address becomes the default for whatever has none yet.
                customer = await self._set_defaults(
                    uow,
                    customer,
                    address.id,
                    shipping=default_shipping or customer.default_shipping_address_id is None,
                    billing=default_billing or customer.default_billing_address_id is None,
                )
                return wrappers_pb2.StringValue(value=str(address.id))

            created = await idempotent(
                uow,
                scope=f"CreateAddress:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            found = await store.get(customer_id, uuid.UUID(created.value))
            await uow.commit()
        if found is None:  # pragma: no cover - a replayed id whose address was deleted since
            raise NotFound("the address was deleted", reason="ADDRESS_NOT_FOUND")
        return customer, found

    async def _set_defaults(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        address_id: uuid.UUID,
        *,
        shipping: bool | None,
        billing: bool | None,
    ) -> d.Customer:
        """Make (True) or stop being (False) a default; None leaves it alone."""
        changes: dict[str, Any] = {}
        for flag, attr in (
            (shipping, "default_shipping_address_id"),
            (billing, "default_billing_address_id"),
        ):
            current = getattr(customer, attr)
            if flag is True and current != address_id:
                changes[attr] = address_id
            elif flag is False and current == address_id:
                changes[attr] = None
        if not changes:
            return customer
        updated = replace(
            customer, **changes, version=customer.version + 1, updated_at=self.clock()
        )
        await CustomerStore(uow.session).update(updated)
        uow.add_event(
            events_pb2.CustomerUpdated(
                customer=convert.customer(updated), changed_fields=sorted(changes)
            )
        )
        return updated

    async def update_address(
        self,
        principal: Principal,
        customer_ref: str,
        address_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        etag: str,
    ) -> tuple[d.Customer, d.Address]:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        if not changes:
            raise d.invalid("update_mask", "name at least one field", "UPDATE_MASK_INVALID")
        label = changes.get("label")
        postal = changes.get("postal_address")
        if label is not None:
            label = d.validate_label(label, "address.label")
        if postal is not None:
            postal = d.normalize_address(postal, "address.postal_address")
        async with self.db.unit_of_work() as uow:
            customer = await self._load(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            current = await store.get(customer_id, address_id)
            if current is None:
                raise NotFound("no such address", reason="ADDRESS_NOT_FOUND")
            check_etag(etag, current.etag, "address")
            updated = current
            if label is not None or postal is not None:
                updated = replace(
                    current,
                    label=current.label if label is None else label,
                    postal=current.postal if postal is None else postal,
                    version=current.version + 1,
                    updated_at=self.clock(),
                )
                await store.update(updated)
            customer = await self._set_defaults(
                uow,
                customer,
                address_id,
                shipping=changes.get("default_shipping"),
                billing=changes.get("default_billing"),
            )
            await uow.commit()
        return customer, updated

    async def delete_address(
        self, principal: Principal, customer_ref: str, address_id: uuid.UUID
    ) -> None:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        async with self.db.unit_of_work() as uow:
            customer = await self._load(uow, customer_id, principal, lock=True)
            store = AddressStore(uow.session)
            if await store.get(customer_id, address_id) is None:
                raise NotFound("no such address", reason="ADDRESS_NOT_FOUND")
            await self._set_defaults(uow, customer, address_id, shipping=False, billing=False)
            await store.delete(address_id)
            await uow.commit()

    # -------------------------------------------------------------------- consents

    async def list_consents(self, principal: Principal, customer_ref: str) -> list[d.ConsentState]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await self._load(uow, customer_id, principal)
            return d.current_consents(await ConsentStore(uow.session).all_of(customer_id))

    async def _state_of(
        self,
        uow: UnitOfWork,
        customer_id: uuid.UUID,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
    ) -> d.ConsentState:
        states = d.current_consents(await ConsentStore(uow.session).all_of(customer_id))
        return next(s for s in states if s.purpose is purpose and s.channel is channel)

    async def _record(
        self,
        uow: UnitOfWork,
        principal: Principal,
        customer: d.Customer,
        previous: d.ConsentState,
        action: d.ConsentAction,
        status: d.ConsentStatus,
        wording_version: str,
    ) -> d.ConsentState:
        now = self.clock()
        entry = d.ConsentEntry(
            id=uuid.uuid4(),
            customer_id=customer.id,
            purpose=previous.purpose,
            channel=previous.channel,
            action=action,
            status=status,
            wording_version=wording_version,
            source_channel=principal.channel,
            source_store_id=principal.store_id,
            actor_kind=_actor(principal),
            recorded_at=now,
        )
        await ConsentStore(uow.session).append(entry)
        state = d.ConsentState(previous.purpose, previous.channel, status, wording_version, now)
        uow.add_event(
            events_pb2.ConsentChanged(
                customer_id=str(customer.id),
                consent=convert.consent_state(state),
                previous_status=int(previous.status),  # type: ignore[arg-type]
            )
        )
        return state

    async def _change_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        grant: bool,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        d.validate_wording_version(wording_version)
        async with self.db.unit_of_work() as uow:
            # The customer row lock serialises ledger appends: the derived state a change is
            # based on cannot shift underneath it.
            customer = await self._load(uow, customer_id, principal, lock=True)

            async def change() -> wrappers_pb2.StringValue:
                previous = await self._state_of(uow, customer_id, purpose, channel)
                if grant:
                    outcome = d.grant_outcome(purpose, channel, previous.status)
                elif previous.status is d.ConsentStatus.REVOKED:
                    outcome = None
                else:
                    outcome = (d.ConsentAction.REVOKE, d.ConsentStatus.REVOKED)
                if outcome is None:
                    return wrappers_pb2.StringValue()
                action, status = outcome
                await self._record(
                    uow, principal, customer, previous, action, status, wording_version
                )
                if status is d.ConsentStatus.PENDING_CONFIRMATION:
                    await self._send_consent_confirmation(
                        uow, customer, purpose, channel, wording_version
                    )
                return wrappers_pb2.StringValue()

            await idempotent(
                uow,
                scope=f"{'Grant' if grant else 'Revoke'}Consent:{customer_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=change,
            )
            state = await self._state_of(uow, customer_id, purpose, channel)
            await uow.commit()
        return state

    async def _send_consent_confirmation(
        self,
        uow: UnitOfWork,
        customer: d.Customer,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
    ) -> None:
        assert customer.email is not None
        token, expires = await self.identity.mail_token(
            uow,
            customer,
            d.TokenPurpose.CONFIRM_CONSENT,
            self.policy.consent_confirmation_ttl,
            {"purpose": int(purpose), "channel": int(channel), "wording_version": wording_version},
        )
        uow.add_event(
            events_pb2.ConsentConfirmationRequested(
                customer_id=str(customer.id),
                email=customer.email,
                purpose=int(purpose),  # type: ignore[arg-type]
                channel=int(channel),  # type: ignore[arg-type]
                token=token,
                expire_time=convert.timestamp(expires),
                locale=customer.locale,
            )
        )

    async def grant_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        return await self._change_consent(
            principal,
            customer_ref,
            purpose,
            channel,
            wording_version,
            grant=True,
            request_id=request_id,
            request=request,
        )

    async def revoke_consent(
        self,
        principal: Principal,
        customer_ref: str,
        purpose: d.ConsentPurpose,
        channel: d.ConsentChannel,
        wording_version: str,
        *,
        request_id: str,
        request: Message,
    ) -> d.ConsentState:
        return await self._change_consent(
            principal,
            customer_ref,
            purpose,
            channel,
            wording_version,
            grant=False,
            request_id=request_id,
            request=request,
        )

    async def confirm_consent(self, principal: Principal, token: str) -> d.ConsentState:
        async with self.db.unit_of_work() as uow:
            customer, subject = await self.identity.redeem(
                uow, token, d.TokenPurpose.CONFIRM_CONSENT, "CONFIRMATION_TOKEN_INVALID"
            )
            purpose = d.ConsentPurpose(subject["purpose"])
            channel = d.ConsentChannel(subject["channel"])
            previous = await self._state_of(uow, customer.id, purpose, channel)
            if previous.status is not d.ConsentStatus.PENDING_CONFIRMATION:
                raise FailedPrecondition(
                    "this consent is no longer waiting for confirmation",
                    reason="CONSENT_NOT_PENDING",
                )
            # Whoever clicks the link acts for the customer the mail went to.
            actor = (
                replace(principal, kind=PrincipalKind.CUSTOMER)
                if not principal.is_authenticated
                else principal
            )
            state = await self._record(
                uow,
                actor,
                customer,
                previous,
                d.ConsentAction.CONFIRM,
                d.ConsentStatus.GRANTED,
                str(subject["wording_version"]),
            )
            await uow.commit()
        return state

    async def consent_history(
        self,
        principal: Principal,
        customer_ref: str,
        *,
        purpose: d.ConsentPurpose | None,
        channel: d.ConsentChannel | None,
        before_seq: int | None,
        limit: int,
    ) -> list[tuple[int, d.ConsentEntry]]:
        customer_id = acting_for(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            await self._load(uow, customer_id, principal)
            return await ConsentStore(uow.session).history(
                customer_id, purpose=purpose, channel=channel, before_seq=before_seq, limit=limit
            )

    # ------------------------------------------------------------------------ GDPR

    async def export(self, principal: Principal, customer_ref: str) -> str:
        # A device-bound session may read a profile but never carry away all of it.
        customer_id = acting_for(principal, customer_ref, customer_scope="profile:write")
        async with self.db.unit_of_work() as uow:
            customer = await self._load(uow, customer_id, principal)
            key = _throttle_key("customer", customer.email_key) if customer.email_key else None
            tables = await PrivacyStore(uow.session).export(customer_id, key, EVENT_TYPES)
        for row in tables["outbox"]:
            row["payload"] = _event_as_json(row["event_type"], row["payload"])
        document = {
            "customer_id": str(customer_id),
            "exported_at": self.clock().isoformat(),
            "service": "customer",
            "tables": tables,
        }
        return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)

    async def erase(self, principal: Principal, customer_ref: str) -> d.Customer:
        customer_id = acting_for(
            principal, customer_ref, customer_scope="profile:write", staff_scope=d.WRITE_SCOPE
        )
        if principal.session_device is not None:
            raise PermissionDenied(
                "a session handed to a device cannot do this", reason="DEVICE_SESSION_NOT_ALLOWED"
            )
        async with self.db.unit_of_work() as uow:
            store = CustomerStore(uow.session)
            customer = await store.get(customer_id, for_update=True)
            if customer is None:
                raise _customer_not_found()
            if customer.is_erased:
                return customer  # erasing twice changes nothing
            now = self.clock()
            key = _throttle_key("customer", customer.email_key) if customer.email_key else None
            await PrivacyStore(uow.session).erase(customer, key, EVENT_TYPES, now)
            erased = d.Customer(
                id=customer.id,
                email=None,
                email_key=None,
                name=d.PersonName(),
                state=d.CustomerState.ERASED,
                version=customer.version + 1,
                created_at=customer.created_at,
                updated_at=now,
                erased_at=now,
            )
            await store.update(erased)
            await store.clear_password(customer.id)
            uow.add_event(
                events_pb2.CustomerErased(
                    customer_id=str(customer.id), erase_time=convert.timestamp(now)
                )
            )
            await uow.commit()
        return erased
