"""Logging a dependency's outage without drowning the log: once when it starts, a reminder
at most every ``every`` seconds while it lasts, and once when it ends.

A loop that retries twice a second against a broker that is down would otherwise write a
line (with a traceback, in nats-py's default) on every attempt, and hide the errors that
matter. No traceback: the reason is the exception's ``repr``, which names its type and
message."""

from __future__ import annotations

import logging
import time
from typing import Any

from tenpo.kit.errors import Unavailable
from tenpo.kit.faults import expected_failure


class OutageLog:
    """The log of one dependency (``what``) as seen by one component."""

    def __init__(self, logger: logging.Logger, what: str, *, every: float = 60.0) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.down_since: float | None = None
        self._last_report = 0.0
        self._failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    @property
    def failed_attempts(self) -> int:
        """Failed attempts in the current outage."""
        return self._failures

    def failed(self, reason: BaseException | str, **extra: Any) -> None:
        """A failed attempt: WARNING if it starts an outage or the last report is ``every``
        seconds old, DEBUG otherwise."""
        now = time.monotonic()
        self._failures += 1
        text = reason if isinstance(reason, str) else repr(reason)
        if self.down_since is None:
            self.down_since = self._last_report = now
            self.logger.warning(
                f"{self.what} unavailable", extra={"reason": text, "dependency": self.what, **extra}
            )
        elif now - self._last_report >= self.every:
            self._last_report = now
            self.logger.warning(
                f"{self.what} still unavailable",
                extra={
                    "reason": text,
                    "dependency": self.what,
                    "down_seconds": round(now - self.down_since, 1),
                    "failed_attempts": self._failures,
                    **extra,
                },
            )
        else:
            self.logger.debug(f"{self.what} unavailable", extra={"reason": text, **extra})

    def recovered(self, **extra: Any) -> None:
        """A success: INFO once if an outage was reported, nothing otherwise."""
        if self.down_since is None:
            return
        self.logger.info(
            f"{self.what} available again",
            extra={
                "dependency": self.what,
                "down_seconds": round(time.monotonic() - self.down_since, 1),
                "failed_attempts": self._failures,
                **extra,
            },
        )
        self.down_since = None
        self._failures = 0

    def background_failure(self, error: BaseException, message: str, **extra: Any) -> None:
        """A failed round of background work (a sweep, a handler): when ``error`` is a
        dependency being unavailable (what the kit answers callers with UNAVAILABLE), it is
        this outage, reported without a traceback; anything else is a bug, logged with its
        traceback at ERROR."""
        if isinstance(expected_failure(error), Unavailable):
            self.failed(error, **extra)
        else:
            self.logger.error(message, exc_info=error, extra=extra)
