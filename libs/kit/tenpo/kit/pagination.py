"""Kit layer: opaque, tamper-evident page tokens and bounded page sizes for List methods (AIP-158).

A page token carries the cursor a List method needs to resume (e.g. the last row's sort key
and id), bound to the query it was issued for. It is sealed with AES-SIV (RFC 5297), an
authenticated cipher, under a key derived from the service's ``page_token_secret``:

- tamper-evident: a changed byte, a token sealed under another secret, or a token issued
  for other filters or another order fails with ``INVALID_PAGE_TOKEN``;
- opaque: clients cannot read the cursor (internal ids, sort keys), so they cannot start
  to depend on its shape. This costs nothing over a signature: AES-SIV is one call and
  needs no nonce, so it cannot be misused by nonce reuse either. It is deterministic —
  the same cursor and query give the same token — which reveals only equality.

Layout: ``base64url(version ‖ AES-SIV(query fingerprint ‖ JSON cursor))``, at most
:data:`MAX_TOKEN_LENGTH` characters. The query fingerprint travels inside the sealed part so
a mismatch can be told apart from tampering (a clearer message, the same reason).

What to pass as ``query``: every request field that shapes the result (parent, filter,
order_by, show_deleted, ...), and never ``page_size`` or ``page_token`` — AIP-158 lets the
page size change between pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tenpo.kit import errors

T = TypeVar("T")

MAX_TOKEN_LENGTH = 2048
_VERSION = b"\x01"
_FINGERPRINT_BYTES = 16
_ASSOCIATED_DATA = [b"tenpo.page-token", _VERSION]
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _invalid_token(description: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"invalid page token: {description}",
        reason="INVALID_PAGE_TOKEN",
        field_violations=[errors.FieldViolation("page_token", description)],
    )


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _query_fingerprint(query: Mapping[str, Any] | str) -> bytes:
    # Tagging the kind keeps the string "{}" and the empty mapping from colliding.
    if isinstance(query, str):
        material = b"s" + query.encode()
    else:
        material = b"m" + _canonical_json(dict(query))
    return hashlib.sha256(material).digest()[:_FINGERPRINT_BYTES]


class PageTokenCodec:
    """Seals cursors into page tokens and opens them again; see the module docstring."""

    def __init__(self, secret: bytes | str) -> None:
        secret_bytes = secret.encode() if isinstance(secret, str) else secret
        if not secret_bytes:
            raise ValueError("the page token secret must not be empty")
        # A derived key, so the configured secret could serve other purposes without two
        # uses ever sharing a key.
        key = HKDF(
            algorithm=hashes.SHA256(), length=64, salt=None, info=b"tenpo page token v1"
        ).derive(secret_bytes)
        self._cipher = AESSIV(key)

    def encode(self, cursor: Mapping[str, Any], *, query: Mapping[str, Any] | str = "") -> str:
        """The token for ``cursor`` (JSON-serializable values) under ``query``. Raises
        ValueError if the token would be too long to be accepted back: keep cursors small."""
        plaintext = _query_fingerprint(query) + _canonical_json(dict(cursor))
        sealed = _VERSION + self._cipher.encrypt(plaintext, _ASSOCIATED_DATA)
        token = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"page token longer than {MAX_TOKEN_LENGTH} characters")
        return token

    def decode(self, token: str, *, query: Mapping[str, Any] | str = "") -> dict[str, Any]:
        """The cursor inside ``token``; an empty token is the first page (empty cursor).
        Raises ``errors.InvalidArgument`` INVALID_PAGE_TOKEN for anything else."""
        if not token:
            return {}
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid_token("too long")
        sealed = self._unbase64(token)
        if not sealed.startswith(_VERSION):
            raise _invalid_token("unknown format")
        try:
            plaintext = self._cipher.decrypt(sealed[len(_VERSION) :], _ASSOCIATED_DATA)
        except InvalidTag:
            raise _invalid_token("not issued by this service, or altered") from None
        fingerprint = plaintext[:_FINGERPRINT_BYTES]
        if not hmac.compare_digest(fingerprint, _query_fingerprint(query)):
            raise _invalid_token("issued for a different query (filter or order changed)")
        try:
            cursor = json.loads(plaintext[_FINGERPRINT_BYTES:])
        except ValueError:
            raise _invalid_token("unreadable cursor") from None
        if not isinstance(cursor, dict):
            raise _invalid_token("unreadable cursor")
        return cursor

    def decode_keyset(
        self, token: str, *, query: Mapping[str, Any] | str = ""
    ) -> tuple[datetime, str] | None:
        """The ``(created_at, id)`` position after which the next page starts (keyset
        pagination, newest first); None for the first page."""
        cursor = self.decode(token, query=query)
        if not cursor:
            return None
        try:
            return datetime.fromisoformat(cursor["t"]), str(cursor["i"])
        except (KeyError, TypeError, ValueError):
            raise _invalid_token("unreadable cursor") from None

    def keyset_page(
        self,
        fetched: Sequence[T],
        size: int,
        position: Callable[[T], tuple[datetime | None, object]],
        *,
        query: Mapping[str, Any] | str = "",
    ) -> tuple[Sequence[T], str]:
        """Split ``size + 1`` fetched rows into the page and the token of the next one
        (empty on the last page); ``position`` gives a row's ``(created_at, id)``."""
        if len(fetched) <= size:
            return fetched, ""
        created_at, identifier = position(fetched[size - 1])
        if created_at is None:
            raise ValueError("keyset pagination needs a creation time on every row")
        token = self.encode({"t": created_at.isoformat(), "i": str(identifier)}, query=query)
        return fetched[:size], token

    @staticmethod
    def _unbase64(token: str) -> bytes:
        # The stdlib decoder silently skips foreign characters, and unused low bits of the
        # last character would let several spellings decode alike; accept only the one
        # canonical spelling of the bytes.
        if not _BASE64URL.fullmatch(token):
            raise _invalid_token("not base64url")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise _invalid_token("not base64url") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            raise _invalid_token("not base64url")
        return raw


def page_size(requested: int, *, default: int = 50, maximum: int = 500) -> int:
    """The page size to use: 0 (unset) means ``default``; above ``maximum`` is coerced down,
    as AIP-158 asks; negative is an error."""
    if requested < 0:
        raise errors.InvalidArgument(
            "page_size must not be negative",
            reason="INVALID_PAGE_SIZE",
            field_violations=[errors.FieldViolation("page_size", "must not be negative")],
        )
    if requested == 0:
        return min(default, maximum)
    return min(requested, maximum)
