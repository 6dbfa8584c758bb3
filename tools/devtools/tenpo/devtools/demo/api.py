"""The demo's HTTP client of the gateway: exactly what a frontend team has — publishable keys,
bearer tokens, JSON in the protos' JSON mapping, AIP-193 errors and server-sent events."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

#: The development publishable keys of `make run` (public by design: a key only names the
#: channel). Another stack's keys come from the command line.
DEV_WEB_KEY = "pk_web_dev_tenpo_0000000000"
DEV_APP_KEY = "pk_app_dev_tenpo_0000000000"
#: A 429 is waited out (its Retry-After) for at most this long in all per call: the gateway's
#: sign-in bucket is small on purpose, and the demo signs in many times from one address.
MAX_RATE_LIMIT_WAIT = 90.0


class ApiError(Exception):
    """A non-2xx answer, with the AIP-193 ``reason`` the gateway gives every error."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        details = error.get("details", []) if isinstance(error, dict) else []
        self.status = status
        self.reason = next((d.get("reason", "") for d in details if "reason" in d), "")
        self.message = error.get("message", "") if isinstance(error, dict) else str(body)
        super().__init__(f"{method} {path}: {status} {self.reason or ''} {self.message}".strip())


class Unreachable(Exception):
    """The gateway does not answer at all (not running, wrong URL)."""


def request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Api:
    """One caller of the gateway: a channel's key and/or a bearer token."""

    http: httpx.Client
    key: str | None = None
    token: str | None = None

    def as_(self, token: str | None) -> Api:
        return Api(self.http, self.key, token)

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.key:
            headers["x-api-key"] = self.key
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        return self.call("POST", path, params=params, body=body or {})

    def patch(self, path: str, body: dict[str, Any], **params: Any) -> Any:
        return self.call("PATCH", path, params=params, body=body)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        waited = 0.0
        while True:
            try:
                response = self.http.request(
                    method,
                    path,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    json=body,
                    headers=self.headers(),
                )
            except httpx.TransportError as error:
                raise Unreachable(
                    f"{method} {path}: the gateway does not answer ({error})"
                ) from None
            if response.status_code == 429 and waited < MAX_RATE_LIMIT_WAIT:
                pause = min(float(response.headers.get("retry-after", "1") or 1), 10.0)
                time.sleep(pause)
                waited += pause
                continue
            break
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {"error": {"message": response.text[:200]}}
        if response.status_code >= 400:
            raise ApiError(method, path, response.status_code, payload)
        return payload

    def stream(self, path: str, **params: Any) -> EventStream:
        """Server-sent events of ``path``, read on a thread of their own until closed."""
        return EventStream(self, path, params)


@dataclass
class EventStream:
    """One SSE connection: every ``data:`` event is kept, in order, for ``wait_for``."""

    api: Api
    path: str
    params: dict[str, Any]
    events: list[Any] = field(default_factory=list)
    _arrived: queue.Queue[Any] = field(default_factory=queue.Queue)
    _closed: threading.Event = field(default_factory=threading.Event)
    _error: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # A stream the gateway ends (drain, the service's maximum duration) is opened again,
        # as the pages' client does.
        while not self._closed.is_set():
            try:
                with self.api.http.stream(
                    "GET",
                    self.path,
                    params=self.params,
                    headers=self.api.headers() | {"accept": "text/event-stream"},
                    timeout=httpx.Timeout(30.0, read=None),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        body = response.json() if response.content else {}
                        self._error.append(
                            str(ApiError("GET", self.path, response.status_code, body))
                        )
                        return
                    for kind, data in _events(response.iter_lines()):
                        if self._closed.is_set():
                            return
                        if kind == "error":
                            self._error.append(f"GET {self.path}: stream error {data}")
                            return
                        if kind == "message":
                            event = json.loads(data)
                            self.events.append(event)
                            self._arrived.put(event)
            except (httpx.TransportError, httpx.StreamError) as error:
                if self._closed.is_set():
                    return
                self._error.append(f"GET {self.path}: {error}")
                time.sleep(0.5)

    def wait_for(self, check: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """The first event (already received or arriving within ``timeout``) that passes."""
        for event in list(self.events):
            if check(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._arrived.get(timeout=0.2)
            except queue.Empty:
                continue
            if check(event):
                return event
        last = self.events[-1] if self.events else None
        problems = f"; stream errors: {self._error[-3:]}" if self._error else ""
        raise TimeoutError(
            f"{what}: not seen on {self.path} within {timeout:.0f} s (last event: {last}){problems}"
        )

    def close(self) -> None:
        self._closed.set()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event type, data) of an SSE body; comments (keep-alives) skipped."""
    kind, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
