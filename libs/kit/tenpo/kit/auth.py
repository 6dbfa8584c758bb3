"""Kit layer: verifies the issuer's signed tokens and says who is calling (principals, scopes).

The customer service issues short-lived JWTs signed with an asymmetric key and publishes the
public keys as a JWKS; every service verifies tokens itself with :class:`TokenVerifier`, so
no caller is trusted merely for being inside the cluster.

Token header: ``alg`` (one of the verifier's allow-list; ``none`` and ``HS*`` never) and
``kid`` (required: selects the key in the JWKS, which is how keys rotate).

Token claims (R = required):

- ``iss`` (R): the issuer; must equal the verifier's ``issuer``.
- ``aud`` (R): audience, a string or a list; must contain the verifier's ``audience``.
- ``sub`` (R): the principal's id (customer id, device client id, staff id, service name).
- ``exp`` (R), ``iat`` (R), ``nbf``: expiry, issue time, not-before; seconds since the epoch.
- ``jti``: token id, for revocation lists and audit.
- ``kind`` (R): ``customer``, ``device``, ``staff`` or ``service``.
- ``scope``: space-separated scopes, e.g. ``"orders:read carts:write"``.
- ``channel``: the touchpoint, a ``tenpo.common.v1.Channel`` name without the ``CHANNEL_``
  prefix (``"WEB"``, ``"KIOSK"``, ``"POS"``, ...).
- ``store``: the store a device (or a staff session) is bound to.
- ``dev``: the device a customer handed their session to (kiosk, smart mirror).

Stable ``reason`` values of the errors raised here:

- ``errors.Unauthenticated``: ``AUTHENTICATION_REQUIRED`` (anonymous caller where a
  principal is needed), ``AUTHENTICATION_MALFORMED`` (unreadable ``authorization``
  metadata), ``TOKEN_INVALID`` (malformed token, missing or ill-typed claims),
  ``TOKEN_EXPIRED``, ``TOKEN_NOT_YET_VALID`` (``nbf``/``iat`` in the future beyond the
  leeway: usually a device with a wrong clock), ``TOKEN_AUDIENCE_INVALID``,
  ``TOKEN_ISSUER_INVALID``, ``TOKEN_SIGNATURE_INVALID``, ``TOKEN_ALGORITHM_REJECTED``,
  ``TOKEN_KEY_UNKNOWN``.
- ``errors.Unavailable``: ``JWKS_UNAVAILABLE`` (the issuer's keys could not be fetched, so
  we cannot tell whether the key exists; clients should retry, not sign the user out).
- ``errors.PermissionDenied``: ``MISSING_SCOPE`` (metadata ``scope``: the missing ones,
  space-separated), ``PRINCIPAL_KIND_NOT_ALLOWED`` (metadata ``kind``).

The channel of a caller (which assortment, prices and consent source apply) comes from
something it cannot forge: a token's ``channel`` claim (devices, customers), or, for anonymous
and channel-less callers, an ``x-tenpo-channel`` header the gateway vouches for with a
:class:`ChannelAssertion`, or that a service principal sets while acting for a touchpoint.
A bare header from anyone else is ignored: anonymous direct callers are CHANNEL_UNSPECIFIED.

Token contents are never logged nor put into error messages: a token is a credential.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import jwt

from tenpo.common.v1 import common_pb2
from tenpo.kit import errors
from tenpo.kit.cache import TLRUCache

if TYPE_CHECKING:
    from tenpo.kit.settings import ServiceSettings

logger = logging.getLogger(__name__)


def _valid_until(_token: str, entry: tuple[float, Any], _now: float) -> float:
    return entry[0]


AUTHORIZATION_HEADER = "authorization"
#: Set by the gateway after it validated the channel's publishable key.
CHANNEL_HEADER = "x-tenpo-channel"
#: The gateway's proof that it set :data:`CHANNEL_HEADER` (see :class:`ChannelAssertion`).
CHANNEL_PROOF_HEADER = "x-tenpo-channel-proof"

#: Algorithms a verifier may be configured with: asymmetric only. A symmetric algorithm
#: would let anyone holding the (public!) verification key mint tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "ES256",
        "ES384",
        "ES512",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "EdDSA",
    }
)
DEFAULT_ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "EdDSA")

#: Real tokens are well under 2 KiB; parsing megabytes of attacker input is pointless work.
MAX_TOKEN_LENGTH = 8 * 1024
_MAX_KID_LENGTH = 256
_MAX_JWKS_BYTES = 1024 * 1024


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    DEVICE = "device"
    STAFF = "staff"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """Who is calling, on which touchpoint, with which scopes."""

    kind: PrincipalKind
    subject: str
    channel: int = common_pb2.CHANNEL_UNSPECIFIED
    store_id: str | None = None
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: datetime | None = None
    #: Device a customer session was handed to (claim ``dev``), e.g. a kiosk in a store.
    session_device: str | None = None

    @classmethod
    def anonymous(cls, channel: int = common_pb2.CHANNEL_UNSPECIFIED) -> Self:
        return cls(kind=PrincipalKind.ANONYMOUS, subject="", channel=channel)

    @property
    def is_authenticated(self) -> bool:
        return self.kind is not PrincipalKind.ANONYMOUS

    @property
    def is_staff(self) -> bool:
        return self.kind is PrincipalKind.STAFF

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def require_authenticated(self) -> None:
        if not self.is_authenticated:
            raise errors.Unauthenticated(
                "this call needs an authenticated principal", reason="AUTHENTICATION_REQUIRED"
            )

    def require_scope(self, *scopes: str) -> None:
        """Raise unless every scope is granted. An anonymous caller gets UNAUTHENTICATED
        rather than PERMISSION_DENIED: signing in is what would help them."""
        self.require_authenticated()
        missing = sorted(set(scopes) - self.scopes)
        if missing:
            raise errors.PermissionDenied(
                f"missing scope(s): {' '.join(missing)}",
                reason="MISSING_SCOPE",
                metadata={"scope": " ".join(missing)},
            )

    def require_any_kind(self, *kinds: PrincipalKind) -> None:
        if self.kind in kinds:
            return
        self.require_authenticated()
        raise errors.PermissionDenied(
            f"a {self.kind.value} principal may not make this call",
            reason="PRINCIPAL_KIND_NOT_ALLOWED",
            metadata={"kind": self.kind.value},
        )

    def can_act_for_customer(self, customer_id: str, *, scope: str = "customers:read") -> bool:
        """True for the customer themself (also through a device they handed their session
        to), and for staff or services holding ``scope``. Pass ``scope="customers:write"``
        for mutations. Devices acting on their own credentials never act for a customer."""
        if not customer_id:
            return False
        if self.kind is PrincipalKind.CUSTOMER:
            return self.subject == customer_id
        if self.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE):
            return scope in self.scopes
        return False


def channel_from_name(name: str) -> int | None:
    """``"WEB"`` (or ``"CHANNEL_WEB"``, any case) → ``CHANNEL_WEB``; None when unknown."""
    normalized = name.strip().upper()
    if not normalized.startswith("CHANNEL_"):
        normalized = "CHANNEL_" + normalized
    try:
        return common_pb2.Channel.Value(normalized)
    except ValueError:
        return None


def _unauthenticated(reason: str, message: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(message, reason=reason)


# --- key sources ---------------------------------------------------------------------------


class JwksSource(ABC):
    """Where the issuer's public keys come from. Several keys may be live at once (rotation);
    the token header's ``kid`` picks one."""

    @abstractmethod
    async def get_key(self, kid: str) -> jwt.PyJWK:
        """The key with this id; raises ``errors.Unauthenticated`` TOKEN_KEY_UNKNOWN."""


def _unknown_key() -> errors.Unauthenticated:
    return _unauthenticated("TOKEN_KEY_UNKNOWN", "the token was signed with an unknown key")


def parse_jwks(document: object) -> dict[str, jwt.PyJWK]:
    """Usable signing keys of a JWKS document by ``kid``. Entries that cannot verify our
    tokens are skipped, with a warning naming only the kid: symmetric (``oct``) keys, keys
    for encryption, keys with unsupported or too-weak parameters."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            logger.warning("JWKS entry without a usable kid skipped")
            continue
        if kid in keys:
            logger.warning("duplicate kid in JWKS, first one kept", extra={"kid": kid})
            continue
        if entry.get("kty") == "oct" or entry.get("use", "sig") != "sig":
            logger.warning("non-signing or symmetric JWKS key skipped", extra={"kid": kid})
            continue
        try:
            key = jwt.PyJWK(entry)
            weak = key.Algorithm.check_key_length(key.Algorithm.prepare_key(key.key))
        except jwt.PyJWTError:
            logger.warning("unusable JWKS key skipped", extra={"kid": kid})
            continue
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS or weak:
            logger.warning("JWKS key with a rejected algorithm skipped", extra={"kid": kid})
            continue
        keys[kid] = key
    return keys


class StaticJwks(JwksSource):
    """A fixed JWKS document (tests, or keys baked into configuration)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(jwks)

    async def get_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._keys[kid]
        except KeyError:
            raise _unknown_key() from None


class FileJwks(JwksSource):
    """A JWKS file, re-read whenever it changes, so a developer can rotate keys without
    restarting services. A missing file means no keys (fail closed); a file that does not
    parse (half written) keeps the previous keys until the next change.

    The check is one ``stat`` per verification: cheap on a local disk, which is the only
    place this source is meant for (production uses :class:`HttpJwks`)."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._keys: dict[str, jwt.PyJWK] = {}
        # mtime alone misses an atomic replace within the same clock tick; inode and size
        # catch those.
        self._signature: tuple[int, int, int] | None = None

    async def get_key(self, kid: str) -> jwt.PyJWK:
        self._reload_if_changed()
        try:
            return self._keys[kid]
        except KeyError:
            raise _unknown_key() from None

    def _reload_if_changed(self) -> None:
        try:
            stat = self._path.stat()
        except OSError:
            if self._signature is not None:
                logger.warning("JWKS file disappeared", extra={"path": str(self._path)})
            self._keys, self._signature = {}, None
            return
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._signature:
            return
        try:
            keys = parse_jwks(json.loads(self._path.read_bytes()))
        except (OSError, ValueError):
            logger.warning("JWKS file unreadable, keeping the previous keys")
            return
        self._keys, self._signature = keys, signature


class HttpJwks(JwksSource):
    """The issuer's JWKS endpoint, cached for ``cache_seconds``.

    An unknown ``kid`` triggers a refetch (the issuer may just have rotated), but never
    more often than every ``min_refresh_interval`` seconds: otherwise every token with a
    made-up kid would turn into a request to the issuer. Concurrent refreshes coalesce
    into one. While the issuer is unreachable the last good keys keep working."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300,
        min_refresh_interval: float = 10,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_refresh_interval < 0 or cache_seconds < min_refresh_interval:
            raise ValueError("need 0 <= min_refresh_interval <= cache_seconds")
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_interval = min_refresh_interval
        self._timeout = httpx.Timeout(timeout_seconds)
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    async def get_key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None and self._is_fresh():
            return key
        await self._refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_fetch_failed:
            raise errors.Unavailable(
                "the token issuer's keys could not be fetched", reason="JWKS_UNAVAILABLE"
            )
        raise _unknown_key()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _is_fresh(self) -> bool:
        return (
            self._fetched_at is not None and self._clock() - self._fetched_at < self._cache_seconds
        )

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self._min_refresh_interval
            ):
                return
            self._last_attempt = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as error:
                self._last_fetch_failed = True
                logger.warning(
                    "fetching the JWKS failed",
                    extra={"jwks_url": self._url, "error": type(error).__name__},
                )
                return
            self._keys, self._fetched_at, self._last_fetch_failed = keys, now, False

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._client is None:
            # Redirects are refused: the configured URL is the trust anchor.
            self._client = httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            )
        response = await self._client.get(self._url, headers={"accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        keys = parse_jwks(response.json())
        if not keys:
            # More likely a broken endpoint than a deliberate revocation of every key;
            # keep serving the keys we have.
            raise ValueError("JWKS document has no usable keys")
        return keys


class _NoKeys(JwksSource):
    """No issuer configured: every token is rejected, anonymous calls still work."""

    async def get_key(self, kid: str) -> jwt.PyJWK:
        raise _unknown_key()


# --- the gateway's word for a channel ------------------------------------------------------

_MAX_REMEMBERED_PROOFS = 1024


class ChannelAssertion:
    """The gateway vouches for the channel it sets in ``x-tenpo-channel``: an HMAC-SHA256 over
    the channel name and the time, under a secret the gateway and the services share
    (setting ``channel_assertion_secret``), sent as ``x-tenpo-channel-proof: <unix time>.<mac>``.

    Why: in-store devices and other services may call a service directly, so a service
    cannot tell the gateway's header (derived from a publishable key) from one a client
    wrote itself; without the proof, an anonymous caller could name KIOSK and see the
    store-only assortment. A proof is good for ``max_age_seconds`` either side of now
    (clock skew), so one copied off the wire soon stops working, and it names one channel."""

    _CONTEXT = b"tenpo-channel-v1\n"

    def __init__(
        self,
        secret: str | bytes,
        *,
        max_age_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("the channel assertion secret must not be empty")
        self._key = key
        self._max_age = max_age_seconds
        self._clock = clock
        # The gateway signs once per channel and second; a service checks each proof once.
        # Both sit on every anonymous request's path, where an HMAC costs more than the rest
        # of the header handling. Only good proofs are remembered, a bounded number of them.
        self._signed: dict[str, tuple[int, str]] = {}
        self._verified: dict[tuple[str, str], int] = {}

    def _mac(self, channel_name: str, issued: int) -> str:
        message = self._CONTEXT + f"{channel_name}\n{issued}".encode()
        digest = hmac.digest(self._key, message, "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def proof(self, channel_name: str) -> str:
        """The proof for ``channel_name`` (``"WEB"``), valid from now."""
        issued = int(self._clock())
        signed = self._signed.get(channel_name)
        if signed is not None and signed[0] == issued:
            return signed[1]
        proof = f"{issued}.{self._mac(channel_name, issued)}"
        if len(self._signed) >= _MAX_REMEMBERED_PROOFS:
            self._signed.clear()
        self._signed[channel_name] = (issued, proof)
        return proof

    def metadata(self, channel_name: str) -> tuple[tuple[str, str], tuple[str, str]]:
        """Call metadata naming ``channel_name`` as the gateway sends it: header and proof."""
        return (CHANNEL_HEADER, channel_name), (CHANNEL_PROOF_HEADER, self.proof(channel_name))

    def verify(self, channel_name: str, proof: str | bytes) -> bool:
        """True when ``proof`` was made for ``channel_name`` with our secret, recently."""
        if isinstance(proof, bytes):
            proof = proof.decode("ascii", errors="replace")
        now = self._clock()
        known = self._verified.get((channel_name, proof))
        if known is not None:
            return abs(now - known) <= self._max_age
        issued_text, _, mac = proof.partition(".")
        if not issued_text.isdigit() or len(issued_text) > 12 or len(mac) > 64:
            return False
        issued = int(issued_text)
        if abs(now - issued) > self._max_age:
            return False
        if not hmac.compare_digest(mac, self._mac(channel_name, issued)):
            return False
        if len(self._verified) >= _MAX_REMEMBERED_PROOFS:
            self._verified.clear()
        self._verified[(channel_name, proof)] = issued
        return True


# --- verification --------------------------------------------------------------------------


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises ``errors.Unauthenticated``."""

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway_seconds: float = 30,
        cache_size: int = 0,
        cache_seconds: float = 30.0,
        channel_assertion: ChannelAssertion | None = None,
    ) -> None:
        #: Checks the gateway's proof for x-tenpo-channel; None: the header is never trusted
        #: from anonymous or channel-less callers (only from service principals).
        self.channel_assertion = channel_assertion
        # A misconfigured allow-list fails at start-up, not on the first request; HS* and
        # none can never be configured (see also the per-token guard in verify).
        refused = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(f"algorithms not allowed for token verification: {refused}")
        if not algorithms:
            raise ValueError("at least one algorithm must be allowed")
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        # Verified tokens by their exact text: an ES256 check costs more than the read it
        # guards, and a device sends the same token thousands of times. Entries live at most
        # cache_seconds (so a key removed from the JWKS stops working soon) and never past
        # the token's own expiry.
        # The kit's cache (cachetools): each entry expires at its own "valid until"; the least
        # recently used goes first when it is full.
        self._cache: TLRUCache[str, tuple[float, Principal]] | None = (
            TLRUCache(maxsize=cache_size, ttu=_valid_until, timer=time.time) if cache_size else None
        )
        self._cache_seconds = cache_seconds

    @classmethod
    def from_settings(cls, settings: ServiceSettings, jwks: JwksSource | None = None) -> Self:
        """A verifier configured by the settings; ``jwks`` overrides where the keys come from
        (the issuer itself verifies against its own key ring)."""
        if jwks is None:
            if settings.auth_jwks_url:
                jwks = HttpJwks(settings.auth_jwks_url)
            elif settings.auth_jwks_file is not None:
                jwks = FileJwks(settings.auth_jwks_file)
            else:
                jwks = _NoKeys()
        return cls(
            jwks,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            algorithms=settings.auth_algorithms,
            cache_size=4096,
            channel_assertion=ChannelAssertion(
                settings.channel_assertion_secret.get_secret_value()
            ),
        )

    async def verify(self, token: str) -> Principal:
        if self._cache is not None:
            cached = self._cache.get(token)
            if cached is not None:
                return cached[1]
        principal = await self._verify(token)
        if self._cache is not None:
            expires = principal.expires_at.timestamp() if principal.expires_at else 0.0
            self._cache[token] = (min(expires, time.time() + self._cache_seconds), principal)
        return principal

    async def _verify(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated("TOKEN_INVALID", "the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthenticated("TOKEN_INVALID", "the token is malformed") from None
        algorithm = header.get("alg")
        if not self._algorithm_allowed(algorithm):
            raise _unauthenticated("TOKEN_ALGORITHM_REJECTED", "the token's algorithm is refused")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise _unauthenticated("TOKEN_INVALID", "the token header has no key id")
        key = await self._jwks.get_key(kid)
        # An RS256 token must not be checked against an EC key's id (or vice versa): the
        # key decides the algorithm, the token header only has to agree.
        if key.algorithm_name != algorithm:
            raise _unauthenticated(
                "TOKEN_ALGORITHM_REJECTED", "the token's algorithm does not match its key"
            )
        claims = self._decode(token, key, algorithm)
        return _principal_from_claims(claims)

    def _algorithm_allowed(self, algorithm: object) -> bool:
        if not isinstance(algorithm, str):
            return False
        # Redundant with the constructor check, on purpose: these two are the classic
        # forgeries and must stay impossible whatever the configuration code becomes.
        if algorithm.lower() == "none" or algorithm.upper().startswith("HS"):
            return False
        return algorithm in self._algorithms

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["iss", "aud", "sub", "exp", "iat"],
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_iat": True,
                    "verify_nbf": True,
                    "verify_iss": True,
                    "verify_aud": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("TOKEN_EXPIRED", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthenticated("TOKEN_NOT_YET_VALID", "the token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise _unauthenticated(
                "TOKEN_SIGNATURE_INVALID", "the token's signature does not verify"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise _unauthenticated(
                "TOKEN_ALGORITHM_REJECTED", "the token's algorithm is refused"
            ) from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated(
                "TOKEN_AUDIENCE_INVALID", "the token is not meant for this audience"
            ) from None
        except jwt.InvalidIssuerError:
            raise _unauthenticated(
                "TOKEN_ISSUER_INVALID", "the token comes from an unknown issuer"
            ) from None
        except jwt.InvalidKeyError:
            raise _unknown_key() from None
        except jwt.PyJWTError:
            raise _unauthenticated("TOKEN_INVALID", "the token is malformed") from None


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    def invalid(claim: str) -> errors.Unauthenticated:
        return _unauthenticated("TOKEN_INVALID", f"the token's {claim!r} claim is invalid")

    def optional_str(claim: str) -> str | None:
        value = claims.get(claim)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise invalid(claim)
        return value

    try:
        kind = PrincipalKind(str(claims.get("kind")))
    except ValueError:
        raise invalid("kind") from None
    # An anonymous token would be a contradiction; refusing it keeps is_authenticated honest.
    if kind is PrincipalKind.ANONYMOUS:
        raise invalid("kind")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise invalid("sub")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise invalid("scope")
    channel: int = common_pb2.CHANNEL_UNSPECIFIED
    channel_name = optional_str("channel")
    if channel_name is not None:
        parsed = channel_from_name(channel_name)
        if parsed is None:
            raise invalid("channel")
        channel = parsed
    expires = claims["exp"]
    if not isinstance(expires, int | float):
        raise invalid("exp")
    return Principal(
        kind=kind,
        subject=subject,
        channel=channel,
        store_id=optional_str("store"),
        scopes=frozenset(scope.split()),
        token_id=optional_str("jti"),
        expires_at=datetime.fromtimestamp(expires, UTC),
        session_device=optional_str("dev"),
    )


# --- request metadata ----------------------------------------------------------------------


def _malformed() -> errors.Unauthenticated:
    return _unauthenticated("AUTHENTICATION_MALFORMED", "expected 'authorization: Bearer <token>'")


def bearer_token(value: str | bytes) -> str:
    """The token of an ``authorization: Bearer <token>`` value, or AUTHENTICATION_MALFORMED."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed() from None
    parts = value.split()
    # Exactly "Bearer <token>": anything else (no token, stray words) is malformed.
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise _malformed()
    return parts[1]


def _header_channel(value: str | bytes | None) -> int:
    if value is None:
        return common_pb2.CHANNEL_UNSPECIFIED
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return channel_from_name(value) or common_pb2.CHANNEL_UNSPECIFIED


def _vouched_channel(
    channel_value: str | bytes | None,
    proofs: Sequence[str | bytes],
    assertion: ChannelAssertion | None,
) -> int:
    """The header's channel if the gateway's proof for it holds, else unspecified."""
    channel = _header_channel(channel_value)
    # One proof only: two would be ambiguous, like two credentials.
    if channel == common_pb2.CHANNEL_UNSPECIFIED or assertion is None or len(proofs) != 1:
        return common_pb2.CHANNEL_UNSPECIFIED
    name = common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]
    return channel if assertion.verify(name, proofs[0]) else common_pb2.CHANNEL_UNSPECIFIED


async def authenticate(
    metadata: Iterable[tuple[str, str | bytes]], verifier: TokenVerifier
) -> Principal:
    """The principal of a call from its gRPC metadata.

    A token's channel claim always wins. An anonymous caller, or a token without a channel,
    takes the channel of ``x-tenpo-channel`` only when the gateway vouches for it (a valid
    ``x-tenpo-channel-proof``) or the caller is a service acting for a touchpoint; anyone
    else's header is ignored (CHANNEL_UNSPECIFIED), so it cannot claim an in-store channel."""
    authorization: list[str | bytes] = []
    channel_value: str | bytes | None = None
    proofs: list[str | bytes] = []
    for key, value in metadata:
        name = key.lower()
        if name == AUTHORIZATION_HEADER:
            authorization.append(value)
        elif name == CHANNEL_HEADER and channel_value is None:
            channel_value = value
        elif name == CHANNEL_PROOF_HEADER:
            proofs.append(value)
    if not authorization:
        return Principal.anonymous(
            _vouched_channel(channel_value, proofs, verifier.channel_assertion)
        )
    # Two credentials on one call are ambiguous, and proxies may disagree on which one
    # counts: refuse rather than pick.
    if len(authorization) > 1:
        raise _malformed()
    principal = await verifier.verify(bearer_token(authorization[0]))
    if principal.channel == common_pb2.CHANNEL_UNSPECIFIED and channel_value is not None:
        if principal.kind is PrincipalKind.SERVICE:
            channel = _header_channel(channel_value)
        else:
            channel = _vouched_channel(channel_value, proofs, verifier.channel_assertion)
        principal = replace(principal, channel=channel)
    return principal


# --- call context --------------------------------------------------------------------------

_current_principal: ContextVar[Principal | None] = ContextVar("tenpo_principal", default=None)


def current_principal() -> Principal:
    """The principal of the call being served; anonymous outside a call."""
    return _current_principal.get() or Principal.anonymous()


def enter_principal(principal: Principal) -> Token[Principal | None]:
    """Set the call's principal; hand the returned token to :func:`exit_principal`. (The
    call guard uses this pair on every call: cheaper than the context manager.)"""
    return _current_principal.set(principal)


def exit_principal(token: Token[Principal | None]) -> None:
    _current_principal.reset(token)


@contextmanager
def use_principal(principal: Principal) -> Iterator[Principal]:
    token = _current_principal.set(principal)
    try:
        yield principal
    finally:
        _current_principal.reset(token)
