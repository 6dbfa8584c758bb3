"""Development and tests only: signing keys, their JWKS, and tokens minted with them.

Nothing here belongs on a production path: the private key sits unencrypted on local disk.
Production keys live with the issuer (the customer service) in a secret store.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PRIVATE_KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"

# The members RFC 7638 hashes for a key thumbprint, per key type.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


@dataclass(frozen=True)
class DevKeys:
    private_key_path: Path
    jwks_path: Path
    kid: str
    private_key_pem: bytes


def generate_key(kid: str | None = None, algorithm: str = "ES256") -> tuple[bytes, dict[str, Any]]:
    """A new key pair for ``algorithm`` (ES256, RS256 or EdDSA): the private key as PKCS#8
    PEM and the public key as a JWK (with ``kid``, ``alg``, ``use``). Without a ``kid`` the
    RFC 7638 thumbprint is used, so the id follows from the key."""
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported algorithm for development keys: {algorithm}")
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_jwk(private_pem, kid=kid)


def public_jwk(private_key_pem: bytes, *, kid: str | None = None) -> dict[str, Any]:
    """The public half of a PEM private key as a JWK; ``alg`` follows from the key type."""
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    jwk: dict[str, Any]
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("only P-256 EC keys are supported (ES256)")
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        algorithm = "ES256"
    elif isinstance(private_key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        algorithm = "RS256"
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        algorithm = "EdDSA"
    else:
        raise ValueError(f"unsupported key type: {type(private_key).__name__}")
    jwk = {name: value for name, value in jwk.items() if name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    return {**jwk, "kid": kid or _thumbprint(jwk), "alg": algorithm, "use": "sig"}


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def ensure_dev_keys(directory: Path) -> DevKeys:
    """The development signing key in ``directory``, created on first use (ES256, private
    key mode 0600), with its public JWKS in ``directory/jwks.json``.

    Safe when several processes of a local stack start at once: the key file appears
    atomically and complete, and whoever loses the race uses the winner's key."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key_path = directory / PRIVATE_KEY_FILE
    jwks_path = directory / JWKS_FILE
    if not private_key_path.exists():
        private_pem, _ = generate_key()
        _create_exclusively(private_key_path, private_pem)
    private_pem = private_key_path.read_bytes()
    jwk = public_jwk(private_pem)
    document = {"keys": [jwk]}
    if not _holds(jwks_path, document):
        _replace_atomically(jwks_path, json.dumps(document, indent=2).encode() + b"\n")
    return DevKeys(
        private_key_path=private_key_path,
        jwks_path=jwks_path,
        kid=jwk["kid"],
        private_key_pem=private_pem,
    )


def _create_exclusively(path: Path, content: bytes) -> None:
    # Write a private temp file (mkstemp creates it 0600), then hard-link it into place:
    # link() fails if the target exists, so readers never see a half-written key.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _replace_atomically(path: Path, content: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jwks-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.chmod(temporary, 0o644)  # public keys; readable by the other services
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _holds(path: Path, document: Mapping[str, Any]) -> bool:
    try:
        return bool(json.loads(path.read_bytes()) == document)
    except (OSError, ValueError):
        return False


def mint_token(
    private_key_pem: bytes,
    kid: str,
    *,
    subject: str,
    kind: str,
    issuer: str,
    audience: str,
    scopes: Sequence[str] = (),
    channel: str | None = None,
    store_id: str | None = None,
    ttl: timedelta = timedelta(minutes=15),
    algorithm: str = "ES256",
    extra_claims: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> str:
    """A signed token with the claims :mod:`tenpo.kit.auth` expects. ``extra_claims`` are
    merged last; a ``None`` value removes that claim (to build deliberately broken tokens)."""
    issued_at = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
        "kind": kind,
    }
    if scopes:
        claims["scope"] = " ".join(scopes)
    if channel is not None:
        claims["channel"] = channel
    if store_id is not None:
        claims["store"] = store_id
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, private_key_pem, algorithm=algorithm, headers={"kid": kid})
