"""Customer use cases, shared parts: the policy, the context every use case runs in, and the
ownership rules (who may act for which customer)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.customer import convert
from services.customer import domain as d
from services.customer.config import CustomerSettings
from services.customer.security import AccessToken, KeyRing, Passwords
from services.customer.store.customers import CustomerStore
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import NotFound, PermissionDenied, Unauthenticated

SELF = "me"


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


@dataclass
class Context:
    """What every use case of the service shares. The clock is replaceable (tests move
    time forward for every use case at once)."""

    db: Database
    keys: KeyRing
    passwords: Passwords
    policy: Policy
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


class UseCase:
    """Base of the use-case classes: reach the shared context by name."""

    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def db(self) -> Database:
        return self.context.db

    @property
    def keys(self) -> KeyRing:
        return self.context.keys

    @property
    def passwords(self) -> Passwords:
        return self.context.passwords

    @property
    def policy(self) -> Policy:
        return self.context.policy

    def clock(self) -> datetime:
        return self.context.clock()


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
        return subject_id(principal)
    principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
    principal.require_scope(staff_scope)
    if ref == SELF:
        raise d.invalid(path, "staff must name the customer", "CUSTOMER_ID_REQUIRED")
    return convert.parse_id(ref, path)


def subject_id(principal: Principal) -> uuid.UUID:
    """The account id of a customer or staff token issued here. Tokens minted elsewhere
    (the dev stack's staff token, a service's) name no account of ours."""
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        raise PermissionDenied(
            "the token's subject is not an account of this service", reason="UNKNOWN_ACCOUNT"
        ) from None


def require_full_customer_session(principal: Principal) -> uuid.UUID:
    """The customer themself, signed in on their own device (not a hand-off session)."""
    principal.require_any_kind(PrincipalKind.CUSTOMER)
    if principal.session_device is not None:
        raise PermissionDenied(
            "a session handed to a device cannot do this", reason="DEVICE_SESSION_NOT_ALLOWED"
        )
    principal.require_scope("profile:write")
    return subject_id(principal)


def customer_not_found() -> NotFound:
    return NotFound("no such customer", reason="CUSTOMER_NOT_FOUND")


async def load_customer(
    uow: UnitOfWork, customer_id: uuid.UUID, principal: Principal, *, lock: bool = False
) -> d.Customer:
    customer = await CustomerStore(uow.session).get(customer_id, for_update=lock)
    # Staff may still see what remains of an erased customer; nobody may change it.
    if customer is None or (customer.is_erased and (lock or not principal.is_staff)):
        raise customer_not_found()
    return customer


def throttle_key(kind: str, email_key: str) -> bytes:
    return hashlib.sha256(f"{kind}:{email_key}".encode()).digest()


def bounded(value: str, path: str, limit: int = d.MAX_TOKEN_INPUT) -> str:
    if len(value) > limit:
        raise d.invalid(path, f"at most {limit} characters")
    return value


def invalid_credentials() -> Unauthenticated:
    # Same words for an unknown e-mail, a wrong password and an erased account.
    return Unauthenticated("the e-mail or the password is wrong", reason="INVALID_CREDENTIALS")
