"""Gateway access layer: who is calling (token or publishable key), what they may call, and
the rate limits that apply; the metadata the backends receive.

Who may call a method is its contract's ``(tenpo.common.v1.access)`` option, read from the
descriptor set (:class:`tenpo.kit.access.AccessRule`); the services' call guard enforces the
same rule again. Here:

- A bearer token is verified (JWKS) and forwarded untouched; the caller's kind and scopes
  must fit the rule. Ownership stays with the services.
- A publishable key (``x-api-key``) fixes the channel of an anonymous caller; the gateway
  sends it on as ``x-tenpo-channel``. Such callers may call PUBLIC methods.
- CREDENTIALS methods (sign-in, token refresh, sign-out, JWKS) need neither.
- Methods whose rule sets ``sign_in_rate_limit`` get the stricter per-address limit.
- A method whose contract states no rule is refused to everyone.
- A client-sent ``x-tenpo-channel`` (or ``x-tenpo-channel-proof``) is always dropped: only
  the gateway sets them, the proof being an HMAC under the secret the gateway shares with
  the services (``channel_assertion_secret``), without which they ignore the header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from services.gateway.ratelimit import TokenBucketLimiter
from tenpo.common.v1 import common_pb2
from tenpo.kit import errors
from tenpo.kit.auth import (
    CHANNEL_HEADER,
    CHANNEL_PROOF_HEADER,
    ChannelAssertion,
    Principal,
    PrincipalKind,
    TokenVerifier,
    bearer_token,
    channel_from_name,
)
from tenpo.kit.ratelimit import refuse_if_waiting

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
    #: The gateway's proof for ``key_channel`` (x-tenpo-channel-proof): the services trust
    #: the channel header of an anonymous or channel-less caller only with it.
    channel_proof: str | None = None

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
            metadata.append((CHANNEL_HEADER, channel_name(self.key_channel)))
            if self.channel_proof is not None:
                metadata.append((CHANNEL_PROOF_HEADER, self.channel_proof))
        return metadata


class AccessPolicy:
    def __init__(self, settings: GatewaySettings, verifier: TokenVerifier, schema: Schema) -> None:
        self._verifier = verifier
        self._assertion = ChannelAssertion(settings.channel_assertion_secret.get_secret_value())
        # Sign-in, sign-up and account recovery: the methods whose rule asks for the stricter
        # per-address limit.
        self._sign_in = frozenset(
            m.full_name
            for m in schema.methods.values()
            if m.access is not None and m.access.sign_in_rate_limit
        )
        self._keys: dict[str, int] = {}
        for key, channel in settings.publishable_keys.items():
            parsed = channel_from_name(channel)
            if parsed is not None:
                self._keys[key] = parsed
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
        proof = self._assertion.proof(channel_name(key_channel)) if key_channel else None
        if not values:
            return Caller(
                Principal.anonymous(key_channel),
                None,
                api_key if key_channel else None,
                key_channel,
                address,
                proof,
            )
        raw = values[0]
        # The kit's verifier caches verified tokens (briefly, never past their expiry).
        principal = await self._verifier.verify(bearer_token(raw))
        return Caller(principal, raw, api_key if key_channel else None, key_channel, address, proof)

    def authorize(self, method: Method, caller: Caller) -> None:
        """Raise unless ``caller`` may call ``method``, by the method's access rule."""
        rule = method.access
        if rule is None:
            # The services refuse such a method at start-up; say so here rather than proxy.
            raise errors.PermissionDenied(
                "this method states no access rule", reason="ACCESS_RULE_MISSING"
            )
        if (
            not caller.principal.is_authenticated
            and caller.api_key is None
            and rule.needs_publishable_key
        ):
            raise errors.Unauthenticated(
                "send a bearer token, or the channel's publishable key in x-api-key",
                reason="API_KEY_REQUIRED",
            )
        rule.check(caller.principal)

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
        refuse_if_waiting(max(waits, default=0.0))


def channel_name(channel: int) -> str:
    """``CHANNEL_WEB`` → ``WEB`` (the form of the channel claim and header)."""
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]


def principal_label(principal: Principal) -> str:
    """For access logs: the kind only, never the subject (personal data)."""
    return principal.kind.value if principal.kind is not PrincipalKind.ANONYMOUS else "anonymous"
