"""Credentials: argon2id password hashing, token signing keys and their JWKS, secret hashes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

# RFC 7638: the members hashed for a key's thumbprint, per key type.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (256 bits by default): refresh tokens, mailed tokens,
    client secrets, device codes."""
    return secrets.token_urlsafe(nbytes)


def secret_hash(secret: str) -> bytes:
    """SHA-256 of a high-entropy secret. Enough for random 256-bit values (nothing to
    brute-force), and it lets us look a token up by its hash."""
    return hashlib.sha256(secret.encode()).digest()


def same_secret(stored_hash: bytes, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, secret_hash(secret))


class Passwords:
    """argon2id hashing off the event loop (it is deliberately slow and memory-hard).

    At most ``max_concurrency`` hashes run at once: each takes ``memory_kib`` of memory, and
    a burst of sign-ins must queue rather than run the pod out of memory."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, max_concurrency: int = 4
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        # Verified against when the account does not exist, so that an unknown e-mail takes
        # as long as a wrong password.
        self._decoy = self._hasher.hash(new_secret())

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            self._hasher.verify(stored or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: Any
    public_jwk: Mapping[str, str]


def load_signing_key(pem: bytes) -> SigningKey:
    """A PEM private key with its public JWK; the kid is the RFC 7638 thumbprint, so the id
    follows from the key (and matches the dev stack's JWKS file)."""
    private_key = serialization.load_pem_private_key(pem, password=None)
    jwk: dict[str, Any]
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("EC signing keys must use P-256 (ES256)")
        jwk, algorithm = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "ES256"
    elif isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < 2048:
            raise ValueError("RSA signing keys need at least 2048 bits")
        jwk, algorithm = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "RS256"
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        jwk, algorithm = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "EdDSA"
    else:
        raise ValueError(f"unsupported signing key type {type(private_key).__name__}")
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    public = {**members, "kid": kid, "alg": algorithm, "use": "sig"}
    return SigningKey(kid=kid, algorithm=algorithm, private_key=private_key, public_jwk=public)


@dataclass(frozen=True)
class AccessToken:
    token: str
    token_id: str
    expires_at: datetime
    scopes: tuple[str, ...]


class KeyRing:
    """The issuer's keys: the first signs, every one verifies (rotation)."""

    def __init__(self, keys: Sequence[SigningKey], *, issuer: str, audience: str) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ValueError("the same signing key is configured twice")
        self.keys = tuple(keys)
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_files(cls, paths: Sequence[Path], *, issuer: str, audience: str) -> KeyRing:
        missing = [str(p) for p in paths if not p.is_file()]
        if not paths or missing:
            raise RuntimeError(
                "the customer service signs tokens and needs its signing keys: set "
                "CUSTOMER_SIGNING_KEY_FILES (JSON list of PEM files, signing key first)"
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        return cls(
            [load_signing_key(p.read_bytes()) for p in paths], issuer=issuer, audience=audience
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [dict(k.public_jwk) for k in self.keys]}

    def sign(
        self,
        *,
        subject: str,
        kind: str,
        now: datetime,
        ttl: timedelta,
        scopes: Sequence[str] = (),
        channel: str | None = None,
        store_id: str | None = None,
        device: str | None = None,
    ) -> AccessToken:
        """An access token with exactly the claims tenpo.kit.auth documents."""
        key = self.keys[0]
        token_id = uuid.uuid4().hex
        expires_at = datetime.fromtimestamp(int((now + ttl).timestamp()), UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": token_id,
            "kind": kind,
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        if channel:
            claims["channel"] = channel
        if store_id:
            claims["store"] = store_id
        if device:
            claims["dev"] = device
        token = jwt.encode(
            claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid}
        )
        return AccessToken(token, token_id, expires_at, tuple(scopes))
