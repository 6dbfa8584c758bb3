"""Gateway access layer: who is calling (token or publishable key), what they may call, and
the rate limits that apply; the metadata the backends receive.

Rules (documented in the gateway README section of the issue report):

- A bearer token is verified here (JWKS) and forwarded untouched; the services verify it
  again. Token holders may call every route; the services check scopes and ownership.
- A publishable key (``x-api-key``) fixes the channel of an anonymous caller; the gateway
  sends it on as ``x-tenpo-channel``. Such callers may call read methods (GET-mapped) and
  the configured public writes (sign-up, account recovery, POST-mapped searches).
- Credential methods (sign-in, token refresh, JWKS) need neither.
- A client-sent ``x-tenpo-channel`` is always dropped: only the gateway sets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method
from services.gateway.ratelimit import TokenBucketLimiter, retry_after_seconds
from tenpo.common.v1 import common_pb2
from tenpo.kit import errors
from tenpo.kit.auth import (
    CHANNEL_HEADER,
    Principal,
    PrincipalKind,
    TokenVerifier,
    bearer_token,
    channel_from_name,
)

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class Caller:
    principal: Principal
    #: The raw ``authorization`` value to forward, when a token was presented.
    authorization: str | None
    #: The publishable key, when one was presented and valid.
    api_key: str | None
    #: Channel from the publishable key, sent as x-tenpo-channel when the token has none.
    key_channel: int
    address: str

    @property
    def channel(self) -> int:
        if self.principal.channel != common_pb2.CHANNEL_UNSPECIFIED:
            return self.principal.channel
        return self.key_channel

    def backend_metadata(self) -> list[tuple[str, str]]:
        metadata: list[tuple[str, str]] = []
        if self.authorization is not None:
            metadata.append(("authorization", self.authorization))
        if self.key_channel != common_pb2.CHANNEL_UNSPECIFIED and (
            not self.principal.is_authenticated
            or self.principal.channel == common_pb2.CHANNEL_UNSPECIFIED
        ):
            name = channel_name(self.key_channel)
            metadata.append((CHANNEL_HEADER, name))
        return metadata


class AccessPolicy:
    def __init__(self, settings: GatewaySettings, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        self._keys: dict[str, int] = {}
        for key, channel in settings.publishable_keys.items():
            parsed = channel_from_name(channel)
            if parsed is not None:
                self._keys[key] = parsed
        self._credential = frozenset(settings.credential_methods)
        self._public_writes = frozenset(settings.public_write_methods)
        self._sign_in = frozenset(settings.sign_in_methods)
        max_keys = settings.rate_limit_max_keys
        self.principal_limiter = TokenBucketLimiter(
            settings.principal_rate, settings.principal_burst, max_keys=max_keys
        )
        self.address_limiter = TokenBucketLimiter(
            settings.address_rate, settings.address_burst, max_keys=max_keys
        )
        self.api_key_limiter = TokenBucketLimiter(
            settings.api_key_rate, settings.api_key_burst, max_keys=max_keys
        )
        self.sign_in_limiter = TokenBucketLimiter(
            settings.sign_in_rate, settings.sign_in_burst, max_keys=max_keys
        )

    async def identify(
        self, authorization: Iterable[str], api_key: str | None, address: str
    ) -> Caller:
        """The caller from its credentials; raises Unauthenticated for bad ones."""
        values = list(authorization)
        if len(values) > 1:
            raise errors.Unauthenticated(
                "expected one 'authorization: Bearer <token>'", reason="AUTHENTICATION_MALFORMED"
            )
        key_channel: int = common_pb2.CHANNEL_UNSPECIFIED
        if api_key is not None:
            found = self._keys.get(api_key.strip())
            if found is None:
                raise errors.Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
            key_channel = found
        if not values:
            return Caller(
                Principal.anonymous(key_channel),
                None,
                api_key if key_channel else None,
                key_channel,
                address,
            )
        raw = values[0]
        # The kit's verifier caches verified tokens (briefly, never past their expiry).
        principal = await self._verifier.verify(bearer_token(raw))
        return Caller(principal, raw, api_key if key_channel else None, key_channel, address)

    def authorize(self, method: Method, caller: Caller, *, read: bool | None = None) -> None:
        """Raise unless ``caller`` may call ``method``. ``read`` overrides the method's own
        read/write classification (an HTTP GET route is a read)."""
        if caller.principal.is_authenticated or method.full_name in self._credential:
            return
        if caller.api_key is None:
            raise errors.Unauthenticated(
                "send a bearer token, or the channel's publishable key in x-api-key",
                reason="API_KEY_REQUIRED",
            )
        is_read = method.is_read if read is None else read
        if is_read or method.full_name in self._public_writes:
            return
        raise errors.Unauthenticated(
            "this call needs a signed-in customer, device or staff member",
            reason="AUTHENTICATION_REQUIRED",
        )

    def limit(self, method_name: str, caller: Caller) -> None:
        """Take a token from every bucket that applies; raise ResourceExhausted if one is
        empty."""
        waits: list[float] = []
        if method_name in self._sign_in:
            waits.append(self.sign_in_limiter.take(caller.address))
        principal = caller.principal
        if principal.is_authenticated:
            waits.append(self.principal_limiter.take(f"{principal.kind.value}:{principal.subject}"))
        else:
            if caller.api_key is not None:
                waits.append(self.api_key_limiter.take(caller.api_key))
            waits.append(self.address_limiter.take(caller.address))
        wait = max(waits, default=0.0)
        if wait > 0:
            seconds = retry_after_seconds(wait)
            raise errors.ResourceExhausted(
                f"rate limit exceeded; retry after {seconds} s",
                reason="RATE_LIMITED",
                metadata={"retry_after_seconds": str(seconds)},
            )


def channel_name(channel: int) -> str:
    """``CHANNEL_WEB`` → ``WEB`` (the form of the channel claim and header)."""
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]


def principal_label(principal: Principal) -> str:
    """For access logs: the kind only, never the subject (personal data)."""
    return principal.kind.value if principal.kind is not PrincipalKind.ANONYMOUS else "anonymous"
