"""Tracking links: an e-mail's links become click links carrying a signed token that names
the message and the link's index, never a URL; the redirect can only reach the URL recorded
at send time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable

_HREF = re.compile(r'href="(https?://[^"]+)"')


def rewrite_links(html: str, click_url: Callable[[int], str]) -> tuple[str, list[str]]:
    """The HTML with each absolute http(s) link replaced by ``click_url(index)``, and the
    original URLs by index."""
    links: list[str] = []

    def replace(match: re.Match[str]) -> str:
        links.append(match.group(1).replace("&amp;", "&"))
        return f'href="{click_url(len(links) - 1)}"'

    return _HREF.sub(replace, html), links


def add_pixel(html: str, pixel_url: str) -> str:
    tag = f'<img src="{pixel_url}" width="1" height="1" alt="" style="display:none">'
    if "</body>" in html:
        return html.replace("</body>", f"{tag}</body>", 1)
    return html + tag


# Signed tracking tokens: base64url(kind + message id + link index) + 16 bytes of
# HMAC-SHA256. Short enough for a URL, unforgeable without the key.
OPEN, CLICK, UNSUBSCRIBE = b"o", b"c", b"u"


def sign(secret: bytes, kind: bytes, message_id: bytes, index: int = 0) -> str:
    body = kind + message_id + index.to_bytes(2, "big")
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")


def verify(secret: bytes, kind: bytes, token: str) -> tuple[bytes, int] | None:
    """(message id bytes, link index), or None for anything not signed by us."""
    if len(token) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 1 + 16 + 2 + 16:
        return None
    # One spelling per token: the unused low bits of the last character must be zero.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    body, mac = raw[:-16], raw[-16:]
    expected = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, expected) or body[:1] != kind:
        return None
    return body[1:17], int.from_bytes(body[17:19], "big")
