"""Gateway connection limits for the HTTP side: uvicorn's httptools protocol with timeouts,
a header size limit and connection caps.

uvicorn alone keeps a connection that never sends a byte open forever (its keep-alive
timer starts only after a first response), lets a client dribble headers forever, buffers
headers of any size, and accepts connections until the process runs out of file handles.
Here every connection is, at any moment, in one phase with one deadline:

- ``idle`` (no request begun: new, or between keep-alive requests): closed after
  ``idle_timeout``. Bytes that begin no request (bare CRLFs) do not extend it.
- ``headers`` (a request begun, its headers not complete): 408 after ``header_timeout``;
  431 once they exceed ``max_header_bytes``.
- ``body`` (headers complete, body still arriving): 408 after ``body_timeout``.
- ``busy`` (the application has the request): no deadline here; backend deadlines and
  ``stream_max_seconds`` bound it.

Connections beyond ``max_per_address`` from one client address, or ``max_connections`` in
all, are answered 503 and closed at once, before a byte is read.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

log = logging.getLogger("tenpo.gateway.connections")

#: File handles kept out of the HTTP connection budget: the gRPC ingress, backend channels,
#: log files, the listening sockets.
RESERVED_FILE_HANDLES = 256
#: Refusals are counted, and logged at most this often (a flood must not flood the log).
REFUSAL_LOG_INTERVAL_SECONDS = 10.0


def _response(status: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\ncontent-length: 0\r\n" + extra + b"\r\n"
    )


REFUSED = _response(b"503 Service Unavailable", b"retry-after: 1\r\n")
TIMED_OUT = _response(b"408 Request Timeout")
HEADERS_TOO_LARGE = _response(b"431 Request Header Fields Too Large")


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout: float
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int
    #: 0: no per-address cap (behind trusted proxies every peer is a proxy).
    max_per_address: int


def file_handle_budget(wanted: int, reserve: int = RESERVED_FILE_HANDLES) -> int:
    """``wanted`` connections, or fewer if the process may not open that many files: a cap
    above the file-handle limit would let connections starve everything else (health
    checks, backend channels) before it is ever reached."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - reserve))


@dataclass
class ConnectionTracker:
    """Open connections per client address, shared by every connection of one server."""

    limits: ConnectionLimits
    total: int = 0
    by_address: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    timed_out: int = 0
    too_large: int = 0
    _logged_at: float = 0.0

    def admit(self, address: str) -> bool:
        limits = self.limits
        per_address = self.by_address.get(address, 0)
        if self.total >= limits.max_connections or (
            limits.max_per_address and per_address >= limits.max_per_address
        ):
            self.refused += 1
            self._log_refusals()
            return False
        self.total += 1
        self.by_address[address] = per_address + 1
        return True

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)

    def _log_refusals(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL_SECONDS:
            self._logged_at = now
            # Counts only: client addresses are personal data.
            log.warning(
                "http connections refused at the cap",
                extra={"refused_total": self.refused, "open_connections": self.total},
            )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the phases and caps described above."""

    tracker: ConnectionTracker  # set on the subclass made by ``protocol_class``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.tracker.limits
        self._address: str | None = None
        self._phase = "idle"
        self._deadline: asyncio.TimerHandle | None = None
        self._pending: float | None = None
        self._header_bytes = 0
        self._chunk = 0
        self._headers_too_large = False

    # --- connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        remote = get_remote_addr(transport)
        address = remote[0] if remote else "unknown"
        if not self.tracker.admit(address):
            self.transport = transport
            transport.write(REFUSED)
            transport.close()
            return
        self._address = address
        super().connection_made(transport)
        self._enter("idle", self._limits.idle_timeout, from_parser=False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return  # refused: uvicorn never knew it
        self._cancel_deadline()
        self.tracker.release(self._address)
        self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return
        self._chunk = len(data)
        if self._phase == "headers":
            self._header_bytes += len(data)
        super().data_received(data)
        # Headers still incomplete: bytes counted per read (bounds what the parser buffers
        # to one read beyond the limit; on_headers_complete checks the exact size).
        if self._phase == "headers" and self._header_bytes > self._limits.max_header_bytes:
            self.tracker.too_large += 1
            self._close_with(HEADERS_TOO_LARGE)
            return
        if self._pending is not None:
            # A phase begun in this read that did not also end in it: now it gets its
            # deadline (most requests arrive whole in one read and never need one).
            if self._phase in ("headers", "body") and self._deadline is None:
                self._deadline = self.loop.call_later(self._pending, self._expired)
            self._pending = None

    # --- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._chunk
        self._enter("headers", self._limits.header_timeout)

    def on_headers_complete(self) -> None:
        # Exact size of what arrived (a whole request may come in one read): request line
        # and headers with their separators.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._limits.max_header_bytes:
            self._headers_too_large = True
            # Stops the parser; uvicorn then calls send_400_response, answered with 431.
            raise HeadersTooLarge
        self._enter("body", self._limits.body_timeout)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._headers_too_large:
            self.tracker.too_large += 1
            self._close_with(HEADERS_TOO_LARGE)
            return
        super().send_400_response(msg)

    def on_message_complete(self) -> None:
        if self._phase == "body":
            self._phase = "busy"
            self._pending = None
            self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == "busy" and not self.pipeline and not self.transport.is_closing():
            # uvicorn arms its own keep-alive timer too (same length); ours also survives
            # bytes that begin no request, which cancel uvicorn's.
            self._enter("idle", self._limits.idle_timeout, from_parser=False)

    # --- deadlines ---------------------------------------------------------------------

    def _enter(self, phase: str, seconds: float, *, from_parser: bool = True) -> None:
        """Start ``phase``. Phases entered by the parser get their deadline once the read
        is parsed (see data_received), the others at once."""
        self._phase = phase
        self._cancel_deadline()
        if from_parser:
            self._pending = seconds
        else:
            self._pending = None
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == "idle":
            self.transport.close()
            return
        self.tracker.timed_out += 1
        self._close_with(TIMED_OUT)

    def _close_with(self, response: bytes) -> None:
        """Answer ``response`` unless another response is under way, then close."""
        cycle = self.cycle
        if self._phase == "headers":
            # The cycle, if any, is the previous request's: answer once it is done.
            answer = cycle is None or cycle.response_complete
        else:
            # This request's: an answer already sent (e.g. a 401 before the body) stands.
            answer = cycle is not None and not cycle.response_started
        self._cancel_deadline()
        self._phase = "closed"
        if cycle is not None and not cycle.response_complete:
            # The application, if it has the request, sees a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            if answer:
                self.transport.write(response)
            self.transport.close()


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose headers are too big."""


def protocol_class(tracker: ConnectionTracker) -> type[LimitedHttpToolsProtocol]:
    """A protocol class bound to ``tracker``, for ``uvicorn.Config(http=...)``."""
    return type("GatewayHttpProtocol", (LimitedHttpToolsProtocol,), {"tracker": tracker})
