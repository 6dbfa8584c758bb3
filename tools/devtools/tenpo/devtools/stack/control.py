"""The dev stack's console and process control: progress lines, the lock that keeps two
stacks off one data directory, and turning SIGINT/SIGTERM into an orderly stop."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TextIO


@dataclass
class _Outcome:
    status: str = "ready"
    detail: str = ""


class Progress:
    """One line per step: its name, then how it went and how long it took."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def finished(self, label: str, status: str, started: float) -> None:
        """A step that ran beside others, reported whole when it ends."""
        self.line(f"  {label:<24} {status} ({time.monotonic() - started:.1f} s)")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[_Outcome]:
        self.out.write(f"  {label:<24} ")
        self.out.flush()
        started = time.monotonic()
        outcome = _Outcome()
        try:
            yield outcome
        except BaseException:
            self.line(f"failed ({time.monotonic() - started:.1f} s)")
            raise
        detail = f"  {outcome.detail}" if outcome.detail else ""
        self.line(f"{outcome.status} ({time.monotonic() - started:.1f} s){detail}")


class StackLock:
    """One devstack process per data directory. An flock, so a crashed runner never leaves
    a stale lock behind; the file's text says who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, purpose: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} {purpose}\n")
        file.flush()
        self._file = file
        return True

    def holder(self) -> str:
        try:
            pid, purpose = self.path.read_text(encoding="utf-8").split()[:2]
        except (OSError, ValueError):
            return "unknown process"
        return f"`{purpose}`, pid {pid}"

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            self._file.close()
            self._file = None


class _ShutdownSignals:
    """SIGINT and SIGTERM both end the stack cleanly: the first one interrupts whatever is
    going on; once stopping has begun, further ones are ignored so the shutdown completes
    in order instead of leaving servers behind."""

    def __init__(self) -> None:
        self.stopping = False

    def __enter__(self) -> _ShutdownSignals:
        self._previous = {
            signum: signal.signal(signum, self._handle)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise KeyboardInterrupt
