"""Customer domain: identities, profiles, addresses, consents, clients and their rules. No I/O."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from tenpo.kit.errors import FieldViolation, InvalidArgument

# Values mirror tenpo.common.v1.Channel.
CHANNEL_WEB, CHANNEL_APP, CHANNEL_KIOSK, CHANNEL_SMART_MIRROR = 1, 2, 3, 4
CHANNEL_SMART_SHELF, CHANNEL_POS, CHANNEL_CALL_CENTER, CHANNEL_BACK_OFFICE = 5, 6, 7, 8
CHANNEL_NAMES = {
    1: "WEB",
    2: "APP",
    3: "KIOSK",
    4: "SMART_MIRROR",
    5: "SMART_SHELF",
    6: "POS",
    7: "CALL_CENTER",
    8: "BACK_OFFICE",
}

#: Scopes of a customer's own session, and of a customer session handed to a store device:
#: the device may show the profile and fill the cart, never change the account or order.
CUSTOMER_SCOPES = ("profile:read", "profile:write", "carts:write", "orders:write")
DEVICE_SESSION_SCOPES = ("profile:read", "carts:write")
READ_SCOPE = "customers:read"
WRITE_SCOPE = "customers:write"
CLIENTS_SCOPE = "clients:write"
#: Services holding it (the notification service) receive the secrets of mailed tokens.
MAIL_SCOPE = "mail:send"
#: What a deployment's first staff user (and the demo staff user) may do: everything staff
#: do, creating device clients included.
STAFF_SCOPES = (
    "catalog:write",
    "inventory:write",
    READ_SCOPE,
    WRITE_SCOPE,
    "orders:read",
    "orders:write",
    "loyalty:write",
    "storecard:write",
    "customers:overview",
    CLIENTS_SCOPE,
)
#: Scopes any machine client may be given without the creator holding them: reads of public
#: data and the carts a device fills for its shoppers.
DEVICE_BASE_SCOPES = frozenset(
    {"catalog:read", "inventory:read", "carts:write", "interactions:write", "greetings:read"}
)
#: Never delegated to a machine: minting credentials stays with people.
UNDELEGABLE_SCOPES = frozenset({CLIENTS_SCOPE})

MAX_EMAIL = 254
MIN_PASSWORD, MAX_PASSWORD = 10, 128
MAX_NAME, MAX_KANA = 50, 100
MAX_LABEL = 50
MAX_ADDRESS_LINE, MAX_ADDRESS_LINES = 200, 3
MAX_ADDRESSES = 20
MAX_SCOPES = 32
MAX_TOKEN_INPUT = 512
MAX_SEARCH_TEXT = 100
MAX_WORDING_VERSION = 64
DEFAULT_LOCALE = "ja-JP"

STORE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SCOPE_PATTERN = re.compile(r"^[a-z][a-z_]{0,31}:[a-z][a-z_]{0,31}$")
LOCALE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")
WORDING_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
POSTAL_CODE_JP = re.compile(r"^(\d{3})-?(\d{4})$")
#: RFC 8628's recommendation: consonants only (no words, no 0/O or 1/I confusion).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8

#: A few passwords every attacker tries first; the real defence is the lockout.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "1234567890",
        "12345678910",
        "qwertyuiop",
        "123456789a",
        "iloveyou12",
        "letmein123",
        "welcome123",
        "passw0rd12",
        "abcdefghij",
        "0987654321",
        "1q2w3e4r5t",
        "qwerty1234",
        "tenpo12345",
    }
)


class CustomerState(IntEnum):
    ACTIVE = 1
    ERASED = 2


class ConsentPurpose(IntEnum):
    MARKETING = 1
    PERSONALIZATION = 2
    ANALYTICS = 3


class ConsentChannel(IntEnum):
    EMAIL = 1
    SMS = 2
    PUSH = 3


class ConsentStatus(IntEnum):
    NOT_SET = 1
    PENDING_CONFIRMATION = 2
    GRANTED = 3
    REVOKED = 4


class ConsentAction(IntEnum):
    REQUEST = 1
    GRANT = 2
    CONFIRM = 3
    REVOKE = 4


class ClientKind(IntEnum):
    KIOSK = 1
    SMART_MIRROR = 2
    SMART_SHELF = 3
    POS = 4
    BACK_OFFICE_TOOL = 5

    @property
    def channel(self) -> int:
        return {
            ClientKind.KIOSK: CHANNEL_KIOSK,
            ClientKind.SMART_MIRROR: CHANNEL_SMART_MIRROR,
            ClientKind.SMART_SHELF: CHANNEL_SMART_SHELF,
            ClientKind.POS: CHANNEL_POS,
            ClientKind.BACK_OFFICE_TOOL: CHANNEL_BACK_OFFICE,
        }[self]

    @property
    def token_kind(self) -> str:
        """In-store hardware signs in as a device; a back-office tool acts as a service."""
        return "service" if self is ClientKind.BACK_OFFICE_TOOL else "device"

    @property
    def in_store(self) -> bool:
        return self is not ClientKind.BACK_OFFICE_TOOL


class TokenPurpose(IntEnum):
    """What a single-use token (sent by mail) is good for."""

    VERIFY_EMAIL = 1
    RESET_PASSWORD = 2
    CONFIRM_CONSENT = 3


class SubjectKind(IntEnum):
    """Whose session a refresh token continues."""

    CUSTOMER = 1
    STAFF = 2


# ----------------------------------------------------------------------------- helpers


def invalid(path: str, description: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(path, description)],
    )


class Violations:
    """Collects every problem of a request, so the client learns them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.items.append(FieldViolation(path, description))

    def check(self, condition: bool, path: str, description: str) -> None:
        if not condition:
            self.add(path, description)

    def absorb(self, error: InvalidArgument) -> None:
        self.items.extend(error.field_violations)

    def raise_if_any(self, message: str, reason: str) -> None:
        if self.items:
            raise InvalidArgument(message, reason=reason, field_violations=self.items)


# ------------------------------------------------------------------------ identity rules


@dataclass(frozen=True)
class Email:
    """An address as stored (normalised) and its lookup key (case-folded)."""

    address: str
    key: str


def normalize_email(value: str, path: str = "email") -> Email:
    raw = value.strip()
    if not raw:
        raise invalid(path, "is required", "EMAIL_INVALID")
    if len(raw) > MAX_EMAIL:
        raise invalid(path, f"at most {MAX_EMAIL} characters", "EMAIL_INVALID")
    try:
        checked = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        # The library's message quotes the input; keep addresses out of errors and logs.
        raise invalid(path, "not a valid e-mail address", "EMAIL_INVALID") from None
    return Email(checked.normalized, checked.normalized.casefold())


def email_lookup_key(value: str) -> str | None:
    """The key of a typed e-mail, or None when it cannot be an address (sign-in, reset)."""
    try:
        return normalize_email(value).key
    except InvalidArgument:
        return None


def validate_password(password: str, email: str | None, path: str = "password") -> None:
    """NIST SP 800-63B style: long enough, not too long to hash, not a known-bad choice.
    No composition rules (they make passwords worse, not stronger)."""
    if len(password) < MIN_PASSWORD:
        raise invalid(path, f"at least {MIN_PASSWORD} characters", "PASSWORD_TOO_WEAK")
    if len(password) > MAX_PASSWORD:
        raise invalid(path, f"at most {MAX_PASSWORD} characters", "PASSWORD_INVALID")
    folded = password.casefold()
    if folded in COMMON_PASSWORDS or len(set(folded)) < 5:
        raise invalid(path, "too common or too repetitive", "PASSWORD_TOO_WEAK")
    if email:
        local = email.split("@", 1)[0].casefold()
        if len(local) >= 4 and local in folded:
            raise invalid(path, "must not contain the e-mail address", "PASSWORD_TOO_WEAK")


def normalize_phone(value: str, path: str) -> str:
    """E.164 form of a phone number; Japanese national numbers (090-…) are accepted."""
    raw = value.strip()
    if len(raw) > 32:
        raise invalid(path, "at most 32 characters", "PHONE_INVALID")
    try:
        number = phonenumbers.parse(raw, "JP")
    except phonenumbers.NumberParseException:
        raise invalid(path, "not a phone number", "PHONE_INVALID") from None
    if not phonenumbers.is_valid_number(number):
        raise invalid(path, "not a valid phone number", "PHONE_INVALID")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_kana(value: str) -> str:
    """Kana readings as full-width katakana (half-width and hiragana folded in)."""
    text = unicodedata.normalize("NFKC", value).strip()
    return "".join(
        chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text.replace(" ", "　")
    )


def _is_kana(text: str) -> bool:
    return all("\u30a1" <= c <= "\u30fa" or c in "ー・ヽヾ　" for c in text)


def fold_for_search(text: str) -> str:
    """Fold text for name matching: NFKC, lower case, katakana → hiragana, no spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(
        chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in folded if not c.isspace()
    )


# ------------------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class PersonName:
    family_name: str = ""
    given_name: str = ""
    family_name_kana: str = ""
    given_name_kana: str = ""

    def normalized(self) -> PersonName:
        return PersonName(
            self.family_name.strip(),
            self.given_name.strip(),
            normalize_kana(self.family_name_kana),
            normalize_kana(self.given_name_kana),
        )

    def validate(self, path: str, violations: Violations) -> None:
        for attr, limit in (("family_name", MAX_NAME), ("given_name", MAX_NAME)):
            value = getattr(self, attr)
            violations.check(bool(value), f"{path}.{attr}", "is required")
            violations.check(len(value) <= limit, f"{path}.{attr}", f"at most {limit} characters")
            violations.check(
                value.isprintable(), f"{path}.{attr}", "must not contain control characters"
            )
        for attr in ("family_name_kana", "given_name_kana"):
            value = getattr(self, attr)
            violations.check(len(value) <= MAX_KANA, f"{path}.{attr}", f"at most {MAX_KANA}")
            violations.check(_is_kana(value), f"{path}.{attr}", "katakana or hiragana only")

    def search_text(self) -> str:
        return fold_for_search(
            " ".join(
                [self.family_name, self.given_name, self.family_name_kana, self.given_name_kana]
            )
        )


@dataclass(frozen=True)
class Customer:
    id: uuid.UUID
    email: str | None
    email_key: str | None
    name: PersonName
    email_verified: bool = False
    phone_number: str | None = None
    birthday: date | None = None
    locale: str = DEFAULT_LOCALE
    preferred_store_id: str | None = None
    default_shipping_address_id: uuid.UUID | None = None
    default_billing_address_id: uuid.UUID | None = None
    state: CustomerState = CustomerState.ACTIVE
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    erased_at: datetime | None = None

    @property
    def etag(self) -> str:
        return f'"{self.id.hex[:8]}-{self.version}"'

    @property
    def is_erased(self) -> bool:
        return self.state is CustomerState.ERASED


def validate_profile(customer: Customer, today: date, violations: Violations) -> None:
    customer.name.validate("customer.name", violations)
    violations.check(
        bool(LOCALE_PATTERN.match(customer.locale)), "customer.locale", "a BCP-47 tag like ja-JP"
    )
    if customer.preferred_store_id is not None:
        violations.check(
            bool(STORE_ID_PATTERN.match(customer.preferred_store_id)),
            "customer.preferred_store_id",
            "a store id (lower-case letters, digits, dashes)",
        )
    if customer.birthday is not None:
        violations.check(
            date(1900, 1, 1) <= customer.birthday <= today,
            "customer.birthday",
            "must be a past date after 1900",
        )


def parse_birthday(year: int, month: int, day: int, path: str) -> date | None:
    if (year, month, day) == (0, 0, 0):
        return None
    try:
        return date(year, month, day)
    except ValueError:
        raise invalid(path, "not a calendar date (year, month and day needed)") from None


@dataclass(frozen=True)
class PostalAddress:
    region_code: str = "JP"
    postal_code: str = ""
    administrative_area: str = ""
    locality: str = ""
    address_lines: tuple[str, ...] = ()
    recipient: str = ""
    phone_number: str = ""


@dataclass(frozen=True)
class Address:
    id: uuid.UUID
    customer_id: uuid.UUID
    label: str
    postal: PostalAddress
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def etag(self) -> str:
        return f'"{self.id.hex[:8]}-{self.version}"'


def normalize_address(postal: PostalAddress, path: str) -> PostalAddress:
    """Validate an address (all problems at once) and return its stored form."""
    violations = Violations()
    region = postal.region_code.strip().upper() or "JP"
    violations.check(bool(re.fullmatch(r"[A-Z]{2}", region)), f"{path}.region_code", "ISO 3166")
    postal_code = unicodedata.normalize("NFKC", postal.postal_code).strip()
    if region == "JP":
        match = POSTAL_CODE_JP.match(postal_code)
        if match:
            postal_code = f"{match.group(1)}-{match.group(2)}"
        else:
            violations.add(f"{path}.postal_code", "a Japanese postal code like 150-0041")
    else:
        violations.check(0 < len(postal_code) <= 16, f"{path}.postal_code", "1-16 characters")
    texts = {
        "administrative_area": (postal.administrative_area.strip(), 50, True),
        "locality": (postal.locality.strip(), 100, True),
        "recipient": (postal.recipient.strip(), 100, True),
    }
    for name, (value, limit, required) in texts.items():
        if required:
            violations.check(bool(value), f"{path}.{name}", "is required")
        violations.check(len(value) <= limit, f"{path}.{name}", f"at most {limit} characters")
    lines = tuple(line.strip() for line in postal.address_lines if line.strip())
    violations.check(bool(lines), f"{path}.address_lines", "at least one line")
    violations.check(
        len(postal.address_lines) <= MAX_ADDRESS_LINES,
        f"{path}.address_lines",
        f"at most {MAX_ADDRESS_LINES} lines",
    )
    for i, line in enumerate(lines):
        violations.check(
            len(line) <= MAX_ADDRESS_LINE,
            f"{path}.address_lines[{i}]",
            f"at most {MAX_ADDRESS_LINE} characters",
        )
    phone = ""
    if postal.phone_number.strip():
        try:
            phone = normalize_phone(postal.phone_number, f"{path}.phone_number")
        except InvalidArgument as error:
            violations.absorb(error)
    violations.raise_if_any("invalid address", "ADDRESS_INVALID")
    return PostalAddress(
        region_code=region,
        postal_code=postal_code,
        administrative_area=texts["administrative_area"][0],
        locality=texts["locality"][0],
        address_lines=lines,
        recipient=texts["recipient"][0],
        phone_number=phone,
    )


def validate_label(label: str, path: str) -> str:
    cleaned = label.strip()
    if len(cleaned) > MAX_LABEL:
        raise invalid(path, f"at most {MAX_LABEL} characters")
    return cleaned


# ------------------------------------------------------------------------------ consents


def needs_double_opt_in(purpose: ConsentPurpose, channel: ConsentChannel) -> bool:
    """Marketing mail needs a confirmed address (Japan's 特定電子メール法 asks for proof of
    opt-in; double opt-in is that proof)."""
    return purpose is ConsentPurpose.MARKETING and channel is ConsentChannel.EMAIL


@dataclass(frozen=True)
class ConsentEntry:
    """One immutable ledger entry."""

    id: uuid.UUID
    customer_id: uuid.UUID
    purpose: ConsentPurpose
    channel: ConsentChannel
    action: ConsentAction
    status: ConsentStatus
    wording_version: str
    source_channel: int
    source_store_id: str | None
    actor_kind: str
    recorded_at: datetime


@dataclass(frozen=True)
class ConsentState:
    purpose: ConsentPurpose
    channel: ConsentChannel
    status: ConsentStatus = ConsentStatus.NOT_SET
    wording_version: str = ""
    updated_at: datetime | None = None


def current_consents(entries: Iterable[ConsentEntry]) -> list[ConsentState]:
    """The state of every purpose × channel: the latest ledger entry wins (entries come in
    ledger order, oldest first)."""
    latest: dict[tuple[ConsentPurpose, ConsentChannel], ConsentEntry] = {}
    for entry in entries:
        latest[(entry.purpose, entry.channel)] = entry
    states = []
    for purpose in ConsentPurpose:
        for channel in ConsentChannel:
            last = latest.get((purpose, channel))
            states.append(
                ConsentState(purpose, channel)
                if last is None
                else ConsentState(
                    purpose, channel, last.status, last.wording_version, last.recorded_at
                )
            )
    return states


def grant_outcome(
    purpose: ConsentPurpose, channel: ConsentChannel, current: ConsentStatus
) -> tuple[ConsentAction, ConsentStatus] | None:
    """What a grant records; None when nothing changes (granting twice is a no-op)."""
    if current is ConsentStatus.GRANTED:
        return None
    if needs_double_opt_in(purpose, channel):
        return ConsentAction.REQUEST, ConsentStatus.PENDING_CONFIRMATION
    return ConsentAction.GRANT, ConsentStatus.GRANTED


def validate_wording_version(value: str, path: str = "wording_version") -> str:
    if not WORDING_PATTERN.match(value):
        raise invalid(path, "required: 1-64 letters, digits, . _ -", "WORDING_VERSION_INVALID")
    return value


# ------------------------------------------------------------------------------- lockout


def lockout_seconds(failures: int, *, threshold: int, base: float, maximum: float) -> float:
    """How long sign-in stays locked after ``failures`` consecutive failures: nothing below
    the threshold, then base, 2×base, 4×base, … up to ``maximum``."""
    if failures < threshold:
        return 0.0
    return float(min(maximum, base * 2 ** min(failures - threshold, 32)))


#: No sign-in takes this long (its RPC deadline is far shorter): attempts counted in flight
#: and admitted longer ago than this were left by a process that died, and no longer count.
SIGN_IN_IN_FLIGHT_STALE = timedelta(seconds=60)


def live_in_flight(in_flight: int, in_flight_at: datetime | None, now: datetime) -> int:
    """Attempts admitted but not decided yet, without those a crashed process left behind."""
    if in_flight_at is None or in_flight_at <= now - SIGN_IN_IN_FLIGHT_STALE:
        return 0
    return max(in_flight, 0)


def may_check_outside_lock(failures: int, in_flight: int, *, threshold: int) -> bool:
    """Whether an attempt may check its password without holding the counter's row lock.

    The lock is set by failures only, so concurrent correct sign-ins never lock each other
    out. Parallel guesses must still not pass it: an attempt checks outside the row lock only
    while, even if it and every attempt in flight failed, the failures would stay below the
    threshold. Otherwise it is decided under the lock, one at a time, and each failure counts
    the ones still in flight as failures too (``lockout_exposure``)."""
    return failures + in_flight + 1 < threshold


def lockout_exposure(failures: int, in_flight: int) -> int:
    """What a lock is decided on after a failure: the failures and the attempts still in
    flight (they may be guesses). Only a failure sets a lock; a success forgives all."""
    return failures + in_flight


# ------------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Client:
    id: str
    display_name: str
    kind: ClientKind
    store_id: str | None
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def channel(self) -> int:
        return self.kind.channel


def validate_client(
    display_name: str,
    kind: ClientKind,
    store_id: str | None,
    scopes: Sequence[str],
    creator_scopes: frozenset[str],
) -> None:
    violations = Violations()
    violations.check(
        0 < len(display_name.strip()) <= 100, "client.display_name", "1-100 characters"
    )
    if kind.in_store:
        violations.check(
            store_id is not None and bool(STORE_ID_PATTERN.match(store_id)),
            "client.store_id",
            "an in-store device needs a store id",
        )
    elif store_id is not None:
        violations.check(
            bool(STORE_ID_PATTERN.match(store_id)), "client.store_id", "not a valid store id"
        )
    violations.check(len(scopes) <= MAX_SCOPES, "client.scopes", f"at most {MAX_SCOPES}")
    for i, scope in enumerate(scopes):
        path = f"client.scopes[{i}]"
        if not SCOPE_PATTERN.match(scope):
            violations.add(path, "a scope like inventory:read")
        elif scope in UNDELEGABLE_SCOPES:
            violations.add(path, "cannot be given to a machine client")
        elif scope not in creator_scopes and scope not in DEVICE_BASE_SCOPES:
            # Nobody hands out more than they hold.
            violations.add(path, "you can only delegate scopes you hold")
    violations.raise_if_any("invalid client", "CLIENT_INVALID")


@dataclass(frozen=True)
class KnownLocation:
    """An inventory location as a device client's store: inventory owns locations, so a
    client's ``store_id`` is an inventory location id."""

    id: str
    is_store: bool  # a shop, not a distribution or fulfilment centre


def check_client_store(kind: ClientKind, store_id: str, location: KnownLocation | None) -> None:
    """A client's store must be a location inventory knows; an in-store device's, a shop."""
    if location is None:
        raise invalid("client.store_id", "no such location in inventory", "STORE_UNKNOWN")
    if kind.in_store and not location.is_store:
        raise invalid(
            "client.store_id",
            "is a distribution or fulfilment centre, not a store",
            "STORE_UNKNOWN",
        )


def validate_staff(email: str, display_name: str, password: str, scopes: Sequence[str]) -> Email:
    """A staff user's e-mail (normalized), name, password and scopes, all checked at once."""
    violations = Violations()
    normalized: Email | None = None
    try:
        normalized = normalize_email(email)
    except InvalidArgument as error:
        violations.absorb(error)
    violations.check(0 < len(display_name.strip()) <= 100, "display_name", "1-100 characters")
    try:
        validate_password(password, normalized.address if normalized else None)
    except InvalidArgument as error:
        violations.absorb(error)
    violations.check(0 < len(scopes) <= MAX_SCOPES, "scopes", f"1-{MAX_SCOPES} scopes")
    for i, scope in enumerate(scopes):
        violations.check(bool(SCOPE_PATTERN.match(scope)), f"scopes[{i}]", "a scope like a:b")
    violations.raise_if_any("invalid staff user", "STAFF_INVALID")
    assert normalized is not None
    return normalized


# ------------------------------------------------------------------------ device sessions


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalize_user_code(value: str) -> str | None:
    cleaned = "".join(c for c in value.upper() if c not in "- ")
    if len(cleaned) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in cleaned):
        return None
    return cleaned


@dataclass(frozen=True)
class DeviceSession:
    id: uuid.UUID
    client_id: str
    user_code: str
    channel: int
    store_id: str | None
    created_at: datetime
    expires_at: datetime
    approved_by: uuid.UUID | None = None
    approved_at: datetime | None = None
    consumed_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


# -------------------------------------------------------------------------------- export


def json_ready(value: object) -> object:
    """Rows → JSON values: UUIDs and times as strings, bytes never (credentials)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def json_row(row: Mapping[str, object]) -> dict[str, object]:
    return {str(k): json_ready(v) for k, v in row.items()}
