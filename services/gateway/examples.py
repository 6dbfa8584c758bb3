"""The demo touchpoints' static files under ``/examples/`` (development only, see
``GatewaySettings.serve_examples``).

Read from disk on every request, so a page edited while ``make run`` runs is seen on the next
reload. Only files of the listed types inside the examples folder are served; every response
carries a CSP that allows nothing but the gateway itself (the pages call the public API on the
same origin, so they need no CORS either).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote

import grpc

from services.gateway.errors import http_error
from services.gateway.http import Handler, Request, Send, send_bytes

EXAMPLES_PREFIX = "/examples/"
#: Suffix → content type; anything else (the sample import files, say) is not served.
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".mjs": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".json": b"application/json",
}
#: Scripts and styles only from files of the gateway (no inline code, no eval), requests only
#: to the gateway, nothing framed or posted elsewhere.
EXAMPLES_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", EXAMPLES_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # The pages change while a developer works on them.
    (b"cache-control", b"no-cache"),
]
MAX_PATH_CHARS = 256


def resolve(root: Path, raw_path: str) -> Path | None:
    """The file a request path names, or None when it is not one we serve (outside the
    folder, a hidden file, a type not listed, missing)."""
    relative = unquote(raw_path.removeprefix(EXAMPLES_PREFIX))
    if len(relative) > MAX_PATH_CHARS or "\\" in relative or "\x00" in relative:
        return None
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path.suffix not in CONTENT_TYPES:
        return None
    return path if path.is_file() else None


def examples_handler(directory: Path) -> Handler:
    """``GET /examples/<path>``; ``/examples/kiosk/`` serves ``kiosk/index.html``."""
    root = directory.resolve()

    async def handle(request: Request, send: Send) -> int:
        request.route_label = f"GET {EXAMPLES_PREFIX}{{file}}"
        path = resolve(root, request.raw_path)
        if path is None:
            raise http_error(404, grpc.StatusCode.NOT_FOUND, "no such file", "ROUTE_NOT_FOUND")
        body = await asyncio.to_thread(path.read_bytes)
        await send_bytes(send, 200, body, CONTENT_TYPES[path.suffix], HEADERS)
        return 200

    return handle


async def redirect_to_index(request: Request, send: Send) -> int:
    """``/examples`` → ``/examples/`` (relative links in the index need the slash)."""
    request.route_label = "GET /examples"
    await send_bytes(send, 308, b"", b"text/plain", [(b"location", EXAMPLES_PREFIX.encode())])
    return 308
