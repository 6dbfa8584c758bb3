"""Token verification, key sources, principals and call metadata of tenpo.kit.auth."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tenpo.common.v1 import common_pb2
from tenpo.devtools import keys as devkeys
from tenpo.kit.auth import (
    ChannelAssertion,
    FileJwks,
    HttpJwks,
    Principal,
    PrincipalKind,
    StaticJwks,
    TokenVerifier,
    authenticate,
    current_principal,
    use_principal,
)
from tenpo.kit.errors import PermissionDenied, Unauthenticated, Unavailable
from tenpo.kit.settings import Environment, ServiceSettings

ISSUER = "https://auth.tenpo.test"
AUDIENCE = "tenpo"


@dataclass(frozen=True)
class Key:
    private_pem: bytes
    jwk: dict[str, Any]

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    @property
    def algorithm(self) -> str:
        return str(self.jwk["alg"])

    def mint(self, *, kid: str | None = None, **overrides: Any) -> str:
        arguments: dict[str, Any] = {
            "subject": "cus_123",
            "kind": "customer",
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "scopes": ("orders:read", "carts:write"),
            "channel": "WEB",
            "algorithm": self.algorithm,
        }
        arguments.update(overrides)
        return devkeys.mint_token(self.private_pem, kid or self.kid, **arguments)


def _key(kid: str, algorithm: str = "ES256") -> Key:
    private_pem, jwk = devkeys.generate_key(kid, algorithm)
    return Key(private_pem, jwk)


@pytest.fixture(scope="module")
def key() -> Key:
    return _key("key-2025-01")


@pytest.fixture(scope="module")
def other_key() -> Key:
    return _key("key-2025-01")  # same kid, different key material: a forger's key


@pytest.fixture(scope="module")
def new_key() -> Key:
    return _key("key-2025-06")


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return _key("rsa-1", "RS256")


def _verifier(*keys: Key, **options: Any) -> TokenVerifier:
    jwks = StaticJwks({"keys": [k.jwk for k in keys]})
    return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, **options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "cus_123",
        "iat": now,
        "exp": now + 900,
        "kind": "customer",
        "scope": "orders:read",
    }
    claims.update(overrides)
    return claims


async def _reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        await verifier.verify(token)
    return raised.value.reason


# --- valid tokens ---------------------------------------------------------------------------


async def test_valid_customer_token_gives_its_principal(key: Key) -> None:
    issued = datetime.now(UTC).replace(microsecond=0)
    token = key.mint(now=issued, extra_claims={"jti": "tok-1", "dev": "kiosk-7"})

    principal = await _verifier(key).verify(token)

    assert principal == Principal(
        kind=PrincipalKind.CUSTOMER,
        subject="cus_123",
        channel=common_pb2.CHANNEL_WEB,
        store_id=None,
        scopes=frozenset({"orders:read", "carts:write"}),
        token_id="tok-1",
        expires_at=issued + timedelta(minutes=15),
        session_device="kiosk-7",
    )
    assert principal.is_authenticated
    assert not principal.is_staff


async def test_device_token_carries_store_and_channel(key: Key, rsa_key: Key) -> None:
    token = rsa_key.mint(subject="dev_kiosk_7", kind="device", channel="KIOSK", store_id="st_1")

    principal = await _verifier(key, rsa_key).verify(token)

    assert principal.kind is PrincipalKind.DEVICE
    assert principal.channel == common_pb2.CHANNEL_KIOSK
    assert principal.store_id == "st_1"
    assert principal.session_device is None


async def test_token_expired_within_leeway_is_still_accepted(key: Key) -> None:
    token = key.mint(now=datetime.now(UTC) - timedelta(minutes=15, seconds=10))
    principal = await _verifier(key, leeway_seconds=30).verify(token)
    assert principal.subject == "cus_123"


# --- rejected tokens ------------------------------------------------------------------------


async def test_expired_token_is_rejected(key: Key) -> None:
    token = key.mint(now=datetime.now(UTC) - timedelta(hours=1))
    assert await _reason_of(_verifier(key), token) == "TOKEN_EXPIRED"


async def test_token_signed_by_another_key_with_the_same_kid_is_rejected(
    key: Key, other_key: Key
) -> None:
    forged = other_key.mint(kind="staff", scopes=("customers:write",))
    assert await _reason_of(_verifier(key), forged) == "TOKEN_SIGNATURE_INVALID"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_unsigned_token_is_rejected(key: Key, alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims(kind="staff")).encode())
    token = f"{header}.{payload}."
    assert await _reason_of(_verifier(key), token) == "TOKEN_ALGORITHM_REJECTED"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_token_keyed_with_the_public_key_is_rejected(key: Key, alg: str) -> None:
    # The classic key-confusion forgery: the public key is public, so a verifier that let
    # the token pick HMAC would accept a MAC anyone can compute.
    public_pem = (
        serialization.load_pem_private_key(key.private_pem, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": key.kid}).encode())
    payload = _b64(json.dumps(_claims(kind="staff")).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), digest).digest()
    token = f"{header}.{payload}.{_b64(signature)}"
    assert await _reason_of(_verifier(key), token) == "TOKEN_ALGORITHM_REJECTED"


@pytest.mark.parametrize(
    "algorithms", [("HS256",), ("ES256", "HS256"), ("none",), ("ES256", "hs512"), ()]
)
def test_symmetric_or_unsigned_algorithms_cannot_be_configured(
    key: Key, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        _verifier(key, algorithms=algorithms)


async def test_algorithm_outside_the_allow_list_is_rejected(key: Key, rsa_key: Key) -> None:
    token = rsa_key.mint()
    verifier = _verifier(key, rsa_key, algorithms=("ES256",))
    assert await _reason_of(verifier, token) == "TOKEN_ALGORITHM_REJECTED"


async def test_algorithm_not_matching_the_keys_type_is_rejected(key: Key, rsa_key: Key) -> None:
    # Signed with RSA but pointing at the EC key's id.
    token = devkeys.mint_token(
        rsa_key.private_pem,
        key.kid,
        subject="cus_1",
        kind="customer",
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithm="RS256",
    )
    assert await _reason_of(_verifier(key, rsa_key), token) == "TOKEN_ALGORITHM_REJECTED"


async def test_wrong_audience_is_rejected(key: Key) -> None:
    token = key.mint(audience="another-system")
    assert await _reason_of(_verifier(key), token) == "TOKEN_AUDIENCE_INVALID"


async def test_wrong_issuer_is_rejected(key: Key) -> None:
    token = key.mint(issuer="https://evil.example")
    assert await _reason_of(_verifier(key), token) == "TOKEN_ISSUER_INVALID"


async def test_tampered_payload_is_rejected(key: Key) -> None:
    header, payload, signature = key.mint().split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "cus_someone_else"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert await _reason_of(_verifier(key), tampered) == "TOKEN_SIGNATURE_INVALID"


async def test_unknown_kid_is_rejected(key: Key, new_key: Key) -> None:
    assert await _reason_of(_verifier(key), new_key.mint()) == "TOKEN_KEY_UNKNOWN"


async def test_token_without_kid_is_rejected(key: Key) -> None:
    header = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    _, payload, signature = key.mint().split(".")
    assert await _reason_of(_verifier(key), f"{header}.{payload}.{signature}") == "TOKEN_INVALID"


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "iss", "aud"])
async def test_token_missing_a_required_claim_is_rejected(key: Key, claim: str) -> None:
    token = key.mint(extra_claims={claim: None})
    assert await _reason_of(_verifier(key), token) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "claims",
    [
        {"kind": None},
        {"kind": "anonymous"},
        {"kind": "admin"},
        {"channel": "TOASTER"},
        {"channel": 3},
        {"scope": ["orders:read"]},
        {"store": ""},
    ],
)
async def test_token_with_an_ill_typed_claim_is_rejected(key: Key, claims: dict[str, Any]) -> None:
    token = key.mint(extra_claims=claims)
    assert await _reason_of(_verifier(key), token) == "TOKEN_INVALID"


async def test_token_not_valid_yet_is_rejected(key: Key) -> None:
    not_before = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    token = key.mint(extra_claims={"nbf": not_before})
    assert await _reason_of(_verifier(key), token) == "TOKEN_NOT_YET_VALID"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 10_000, "..."])
async def test_garbage_is_rejected_as_invalid(key: Key, token: str) -> None:
    assert await _reason_of(_verifier(key), token) == "TOKEN_INVALID"


async def test_symmetric_keys_in_a_jwks_are_ignored() -> None:
    jwks = StaticJwks({"keys": [{"kty": "oct", "kid": "shared", "k": _b64(b"s" * 32)}]})
    with pytest.raises(Unauthenticated) as raised:
        await jwks.get_key("shared")
    assert raised.value.reason == "TOKEN_KEY_UNKNOWN"


async def test_rejections_never_reveal_the_token(
    key: Key, other_key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [
        other_key.mint(),
        key.mint(audience="x"),
        key.mint(now=datetime.now(UTC) - timedelta(hours=1)),
    ]
    for token in tokens:
        with pytest.raises(Unauthenticated) as raised:
            await _verifier(key).verify(token)
        signature = token.split(".")[2]
        assert signature not in str(raised.value)
        assert signature not in caplog.text


# --- key sources and rotation ---------------------------------------------------------------


async def test_every_key_of_a_rotated_jwks_verifies_its_own_tokens(key: Key, new_key: Key) -> None:
    verifier = _verifier(key, new_key)
    assert (await verifier.verify(key.mint(subject="old"))).subject == "old"
    assert (await verifier.verify(new_key.mint(subject="new"))).subject == "new"


async def test_file_jwks_follows_rotation(key: Key, new_key: Key, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.jwk, new_key.jwk]}))
    verifier = TokenVerifier(FileJwks(path), issuer=ISSUER, audience=AUDIENCE)
    old_token, new_token = key.mint(), new_key.mint()
    assert (await verifier.verify(old_token)).subject == "cus_123"

    path.write_text(json.dumps({"keys": [new_key.jwk]}))  # the old key retires

    assert await _reason_of(verifier, old_token) == "TOKEN_KEY_UNKNOWN"
    assert (await verifier.verify(new_token)).subject == "cus_123"

    path.unlink()
    assert await _reason_of(verifier, new_token) == "TOKEN_KEY_UNKNOWN"


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class _Issuer:
    """A JWKS endpoint served through httpx.MockTransport, counting its requests."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.status = 200
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.status != 200:
            return httpx.Response(self.status)
        return httpx.Response(200, json={"keys": [k.jwk for k in self.keys]})

    def jwks(self, clock: Callable[[], float], **options: Any) -> HttpJwks:
        return HttpJwks(
            "https://auth.tenpo.test/.well-known/jwks.json",
            transport=httpx.MockTransport(self.handle),
            clock=clock,
            **options,
        )


async def test_http_jwks_refetches_unknown_kids_at_a_bounded_rate(
    key: Key, new_key: Key, other_key: Key
) -> None:
    issuer, clock = _Issuer(key), _FakeClock()
    jwks = issuer.jwks(clock, cache_seconds=300, min_refresh_interval=10)
    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)
    old_token, new_token = key.mint(), new_key.mint()

    await verifier.verify(old_token)
    await verifier.verify(old_token)
    assert issuer.requests == 1  # cached

    clock.now += 60
    made_up = other_key.mint(kid="made-up-kid")
    results = await asyncio.gather(
        *(verifier.verify(made_up) for _ in range(20)), return_exceptions=True
    )
    assert {getattr(r, "reason", None) for r in results} == {"TOKEN_KEY_UNKNOWN"}
    assert issuer.requests == 2  # twenty unknown kids, one refetch

    issuer.keys.append(new_key)  # the issuer rotates...
    clock.now += 5
    assert await _reason_of(verifier, new_token) == "TOKEN_KEY_UNKNOWN"
    assert issuer.requests == 2  # ...but we asked 5 s ago, so we do not ask again yet

    clock.now += 5
    assert (await verifier.verify(new_token)).subject == "cus_123"
    assert issuer.requests == 3

    clock.now += 300
    await verifier.verify(old_token)
    assert issuer.requests == 4  # the cache expired, even for a known kid
    await jwks.aclose()


async def test_http_jwks_keeps_the_last_good_keys_while_the_issuer_is_down(key: Key) -> None:
    issuer, clock = _Issuer(key), _FakeClock()
    jwks = issuer.jwks(clock, cache_seconds=60, min_refresh_interval=10)
    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)
    token = key.mint()
    await verifier.verify(token)

    issuer.status = 503
    clock.now += 120
    assert (await verifier.verify(token)).subject == "cus_123"
    assert issuer.requests == 2  # it did try
    await jwks.aclose()


async def test_http_jwks_unreachable_on_first_use_is_unavailable(key: Key) -> None:
    issuer, clock = _Issuer(key), _FakeClock()
    issuer.status = 500
    verifier = TokenVerifier(issuer.jwks(clock), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(Unavailable) as raised:
        await verifier.verify(key.mint())
    assert raised.value.reason == "JWKS_UNAVAILABLE"


def _settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "auth_jwks_url": "",
        "auth_jwks_file": None,
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
    }
    values.update(overrides)
    return ServiceSettings(**values)


async def test_verifier_without_configured_keys_rejects_every_token(key: Key) -> None:
    verifier = TokenVerifier.from_settings(_settings())
    assert await _reason_of(verifier, key.mint()) == "TOKEN_KEY_UNKNOWN"
    anonymous = await authenticate([("x-tenpo-channel", "WEB")], verifier)
    assert anonymous.kind is PrincipalKind.ANONYMOUS


async def test_dev_keys_are_created_once_and_verify_through_settings(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    first = devkeys.ensure_dev_keys(directory)
    second = devkeys.ensure_dev_keys(directory)

    assert second == first
    assert stat.S_IMODE(first.private_key_path.stat().st_mode) == 0o600
    published = json.loads(first.jwks_path.read_text())
    assert [k["kid"] for k in published["keys"]] == [first.kid]
    assert "d" not in published["keys"][0]  # public half only

    verifier = TokenVerifier.from_settings(_settings(auth_jwks_file=first.jwks_path))
    token = devkeys.mint_token(
        first.private_key_pem,
        first.kid,
        subject="stf_9",
        kind="staff",
        issuer=ISSUER,
        audience=AUDIENCE,
        channel="BACK_OFFICE",
    )
    principal = await verifier.verify(token)
    assert principal.is_staff
    assert principal.channel == common_pb2.CHANNEL_BACK_OFFICE


# --- principals and scopes ------------------------------------------------------------------


def _principal(kind: PrincipalKind, *scopes: str, subject: str = "cus_123") -> Principal:
    return Principal(kind=kind, subject=subject, scopes=frozenset(scopes))


def test_require_scope_names_the_missing_scopes() -> None:
    principal = _principal(PrincipalKind.CUSTOMER, "orders:read")
    principal.require_scope("orders:read")
    with pytest.raises(PermissionDenied) as raised:
        principal.require_scope("orders:read", "orders:write", "carts:write")
    assert raised.value.reason == "MISSING_SCOPE"
    assert raised.value.metadata == {"scope": "carts:write orders:write"}


def test_anonymous_callers_are_asked_to_authenticate() -> None:
    anonymous = Principal.anonymous(common_pb2.CHANNEL_WEB)
    assert not anonymous.is_authenticated
    for check in (
        anonymous.require_authenticated,
        lambda: anonymous.require_scope("orders:read"),
        lambda: anonymous.require_any_kind(PrincipalKind.CUSTOMER),
    ):
        with pytest.raises(Unauthenticated) as raised:
            check()
        assert raised.value.reason == "AUTHENTICATION_REQUIRED"


def test_require_any_kind() -> None:
    device = _principal(PrincipalKind.DEVICE, subject="dev_1")
    device.require_any_kind(PrincipalKind.DEVICE, PrincipalKind.STAFF)
    with pytest.raises(PermissionDenied) as raised:
        device.require_any_kind(PrincipalKind.CUSTOMER)
    assert raised.value.reason == "PRINCIPAL_KIND_NOT_ALLOWED"
    Principal.anonymous().require_any_kind(PrincipalKind.ANONYMOUS, PrincipalKind.CUSTOMER)


def test_who_can_act_for_a_customer() -> None:
    assert _principal(PrincipalKind.CUSTOMER).can_act_for_customer("cus_123")
    assert not _principal(PrincipalKind.CUSTOMER).can_act_for_customer("cus_456")
    assert not _principal(PrincipalKind.CUSTOMER, subject="").can_act_for_customer("")
    staff = _principal(PrincipalKind.STAFF, "customers:read", subject="stf_1")
    assert staff.can_act_for_customer("cus_456")
    assert not staff.can_act_for_customer("cus_456", scope="customers:write")
    assert not _principal(PrincipalKind.STAFF, subject="stf_2").can_act_for_customer("cus_456")
    device = _principal(PrincipalKind.DEVICE, "customers:read", subject="dev_1")
    assert not device.can_act_for_customer("cus_456")
    assert not Principal.anonymous().can_act_for_customer("cus_123")


# --- call metadata and context --------------------------------------------------------------


GATEWAY = ChannelAssertion("gateway-and-services-secret")


@pytest.mark.parametrize(
    ("header", "proof_for", "channel"),
    [
        ("KIOSK", "KIOSK", common_pb2.CHANNEL_KIOSK),
        ("smart_mirror", "SMART_MIRROR", common_pb2.CHANNEL_SMART_MIRROR),
        (b"POS", "POS", common_pb2.CHANNEL_POS),
        ("TOASTER", "TOASTER", common_pb2.CHANNEL_UNSPECIFIED),
        (None, None, common_pb2.CHANNEL_UNSPECIFIED),
        # A bare header is the caller's own word: ignored (the issue's replay).
        ("KIOSK", None, common_pb2.CHANNEL_UNSPECIFIED),
        # A proof is for one channel: WEB's does not open KIOSK.
        ("KIOSK", "WEB", common_pb2.CHANNEL_UNSPECIFIED),
    ],
)
async def test_anonymous_callers_take_the_channel_the_gateway_vouches_for(
    key: Key, header: str | bytes | None, proof_for: str | None, channel: int
) -> None:
    metadata: list[tuple[str, str | bytes]] = [("user-agent", "grpc-python")]
    if header is not None:
        metadata.append(("x-tenpo-channel", header))
    if proof_for is not None:
        metadata.append(("x-tenpo-channel-proof", GATEWAY.proof(proof_for)))
    principal = await authenticate(metadata, _verifier(key, channel_assertion=GATEWAY))
    assert principal == Principal.anonymous(channel)
    assert not principal.is_authenticated


async def test_a_proof_needs_the_secret_and_goes_stale() -> None:
    now = [1_800_000_000.0]
    gateway = ChannelAssertion("s" * 32, clock=lambda: now[0])
    proof = gateway.proof("WEB")
    assert gateway.verify("WEB", proof)
    assert not gateway.verify("APP", proof)
    assert not ChannelAssertion("t" * 32, clock=lambda: now[0]).verify("WEB", proof)
    issued, _, mac = proof.partition(".")
    assert not gateway.verify("WEB", f"{int(issued) + 1}.{mac}")  # the time is signed too
    for garbage in ("", ".", "abc.def", f"{issued}.", "9" * 40 + "." + mac, b"\xff.\xfe"):
        assert not gateway.verify("WEB", garbage)
    now[0] += 299
    assert gateway.verify("WEB", proof)
    now[0] += 2
    assert not gateway.verify("WEB", proof)  # copied off the wire, it soon stops working
    with pytest.raises(ValueError, match="empty"):
        ChannelAssertion("")


async def test_without_an_assertion_key_no_header_is_trusted(key: Key) -> None:
    metadata = [GATEWAY.metadata("KIOSK")[0], GATEWAY.metadata("KIOSK")[1]]
    principal = await authenticate(metadata, _verifier(key))
    assert principal.channel == common_pb2.CHANNEL_UNSPECIFIED


async def test_two_proofs_are_not_trusted(key: Key) -> None:
    metadata = [*GATEWAY.metadata("KIOSK"), ("x-tenpo-channel-proof", GATEWAY.proof("KIOSK"))]
    principal = await authenticate(metadata, _verifier(key, channel_assertion=GATEWAY))
    assert principal.channel == common_pb2.CHANNEL_UNSPECIFIED


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Token abc", b"Bearer \xff"],
)
async def test_malformed_authorization_is_rejected(key: Key, authorization: str | bytes) -> None:
    with pytest.raises(Unauthenticated) as raised:
        await authenticate([("authorization", authorization)], _verifier(key))
    assert raised.value.reason == "AUTHENTICATION_MALFORMED"


async def test_two_authorization_headers_are_rejected(key: Key) -> None:
    metadata = [("authorization", f"Bearer {key.mint()}")] * 2
    with pytest.raises(Unauthenticated) as raised:
        await authenticate(metadata, _verifier(key))
    assert raised.value.reason == "AUTHENTICATION_MALFORMED"


async def test_the_tokens_channel_wins_over_the_header(key: Key) -> None:
    metadata = [("authorization", f"Bearer {key.mint()}"), ("x-tenpo-channel", "KIOSK")]
    principal = await authenticate(metadata, _verifier(key))
    assert principal.kind is PrincipalKind.CUSTOMER
    assert principal.channel == common_pb2.CHANNEL_WEB


async def test_the_vouched_header_fills_in_when_the_token_has_no_channel(key: Key) -> None:
    token = ("authorization", f"bearer {key.mint(channel=None)}")
    verifier = _verifier(key, channel_assertion=GATEWAY)
    principal = await authenticate([token, *GATEWAY.metadata("APP")], verifier)
    assert principal.channel == common_pb2.CHANNEL_APP
    bare = await authenticate([token, ("x-tenpo-channel", "KIOSK")], verifier)
    assert bare.channel == common_pb2.CHANNEL_UNSPECIFIED


async def test_a_service_names_the_touchpoint_it_acts_for(key: Key) -> None:
    # Services are trusted callers: the cart service asking for KIOSK prices needs no proof.
    token = key.mint(kind="service", subject="cart", channel=None)
    metadata = [("authorization", f"Bearer {token}"), ("x-tenpo-channel", "KIOSK")]
    principal = await authenticate(metadata, _verifier(key))
    assert (principal.kind, principal.channel) == (PrincipalKind.SERVICE, common_pb2.CHANNEL_KIOSK)


async def test_an_invalid_bearer_token_is_not_downgraded_to_anonymous(key: Key) -> None:
    metadata = [("authorization", f"Bearer {key.mint(audience='x')}")]
    with pytest.raises(Unauthenticated) as raised:
        await authenticate(metadata, _verifier(key))
    assert raised.value.reason == "TOKEN_AUDIENCE_INVALID"


async def test_use_principal_sets_and_restores_the_current_principal() -> None:
    customer = _principal(PrincipalKind.CUSTOMER)
    assert current_principal() == Principal.anonymous()
    with use_principal(customer):
        assert current_principal() is customer
        # A task started inside the call sees the call's principal.
        assert await asyncio.create_task(_current()) is customer
    assert current_principal() == Principal.anonymous()


async def _current() -> Principal:
    return current_principal()


async def test_the_verified_token_cache_is_bounded_and_forgets_by_least_recent_use(
    key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(key, cache_size=2, cache_seconds=60)
    checked: list[str] = []
    real = verifier._verify

    async def counting(token: str) -> Any:
        checked.append(token)
        return await real(token)

    monkeypatch.setattr(verifier, "_verify", counting)
    a, b, c = (key.mint(subject=f"cus_{n}") for n in "abc")
    for token in (a, b, a, c, a, b):
        assert (await verifier.verify(token)).subject == f"cus_{'abc'[(a, b, c).index(token)]}"
    # a, b cached; a used again; c evicts b (least recently used); a still cached; b again.
    assert checked == [a, b, c, b]


async def test_a_cached_token_is_checked_again_once_its_cache_time_is_over(
    key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(key, cache_size=10, cache_seconds=0)
    checked: list[str] = []
    real = verifier._verify

    async def counting(token: str) -> Any:
        checked.append(token)
        return await real(token)

    monkeypatch.setattr(verifier, "_verify", counting)
    token = key.mint()
    await verifier.verify(token)
    await verifier.verify(token)
    assert checked == [token, token]
