"""Devstack supervision: whatever dies while the stack runs is started again, with backoff.

A developer's stack should survive what a cluster survives: a service that crashes (or is
killed) comes back, and so does the embedded PostgreSQL or NATS; the services reconnect on
their own. Each member is restarted after a delay that doubles with every failure in a row
(1 s, 2 s, 4 s … up to 30 s) and starts from 1 s again once a run has lasted a minute, so a
service that crashes at start-up does not spin, and one that crashed once a day comes back
at once. Every exit, restart and recovery is reported, with the log to read.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tenpo.devtools.stack.nats import EmbeddedNats
from tenpo.devtools.stack.postgres import EmbeddedPostgres, PostgresError

#: First restart delay, its ceiling, and how long a run must last to forgive earlier crashes.
INITIAL_DELAY = 1.0
MAXIMUM_DELAY = 30.0
RESET_AFTER = 60.0


class Member(Protocol):
    """One supervised process: a service, PostgreSQL or NATS."""

    @property
    def name(self) -> str: ...

    @property
    def log_file(self) -> Path: ...

    def exited(self) -> str | None:
        """None while it runs; otherwise how it ended (``exit code 1``, ``killed by SIGKILL``)."""

    def restart(self, attempt: int) -> None:
        """Start it again; raising means "try again later" (the message is reported)."""

    def ready(self) -> bool:
        """Whether a restarted member serves again (a health check; cheap, bounded)."""


@dataclass
class Backoff:
    """Exponential restart delays, forgiven after a long enough run."""

    initial: float = INITIAL_DELAY
    maximum: float = MAXIMUM_DELAY
    reset_after: float = RESET_AFTER
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.reset_after:
            self.failures = 0
        self.failures += 1
        return float(min(self.maximum, self.initial * 2 ** (self.failures - 1)))


class Phase(enum.Enum):
    RUNNING = "running"
    #: Dead, waiting for its restart delay to pass.
    WAITING = "waiting"
    #: Restarted, not serving yet.
    STARTING = "starting"


@dataclass
class _State:
    backoff: Backoff
    started_at: float
    phase: Phase = Phase.RUNNING
    due: float = 0.0
    restarts: int = 0
    last_exit: str = ""


@dataclass
class Watchdog:
    """Checks every member on each :meth:`tick` and moves it through running → waiting →
    starting → running. Members are handled in the given order, so the servers the services
    depend on (PostgreSQL, NATS) come first."""

    members: Sequence[Member]
    report: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    backoff: Callable[[], Backoff] = Backoff
    _states: dict[str, _State] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        now = self.clock()
        self._states = {m.name: _State(self.backoff(), started_at=now) for m in self.members}

    def restarts(self, name: str) -> int:
        return self._states[name].restarts

    def phase(self, name: str) -> Phase:
        return self._states[name].phase

    def tick(self) -> None:
        for member in self.members:
            self._check(member, self._states[member.name], self.clock())

    def _check(self, member: Member, state: _State, now: float) -> None:
        if state.phase is Phase.WAITING:
            if now >= state.due:
                self._restart(member, state, now)
            return
        how = member.exited()
        if how is not None:
            self._schedule(member, state, now, how)
        elif state.phase is Phase.STARTING and member.ready():
            state.phase = Phase.RUNNING
            self.report(
                f"{member.name} is serving again (restart {state.restarts}, "
                f"{now - state.started_at:.1f} s after it was started)"
            )

    def _schedule(self, member: Member, state: _State, now: float, how: str) -> None:
        delay = state.backoff.next_delay(now - state.started_at)
        state.phase = Phase.WAITING
        state.due = now + delay
        state.last_exit = how
        self.report(
            f"{member.name} {how}; restarting it in {delay:.0f} s "
            f"(restart {state.restarts + 1}); see {member.log_file}"
        )

    def _restart(self, member: Member, state: _State, now: float) -> None:
        if member.exited() is None:
            # Back on its own meanwhile (e.g. someone ran `pg_ctl restart`): leave it be.
            state.phase = Phase.RUNNING
            state.started_at = now
            self.report(f"{member.name} is running again (it came back on its own)")
            return
        state.restarts += 1
        try:
            member.restart(state.restarts)
        except Exception as error:
            # Whatever a failed start raises (the port still taken, a server still shutting
            # down) is worth another try later, never the end of the stack.
            delay = state.backoff.next_delay(0.0)
            state.due = self.clock() + delay
            self.report(
                f"{member.name}: restart {state.restarts} failed ({error}); "
                f"trying again in {delay:.0f} s"
            )
            return
        state.phase = Phase.STARTING
        state.started_at = now


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class PostgresMember:
    """The embedded PostgreSQL: started again on the same data directory and port."""

    name = "postgres"

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self.log_file = server.log_file

    def exited(self) -> str | None:
        try:
            return None if self.server.is_running() else "stopped"
        except PostgresError:
            # A postmaster.pid that stays half-written: a server stuck starting is not running.
            return "is stuck starting"

    def restart(self, attempt: int) -> None:
        self.server.start()

    def ready(self) -> bool:
        return True  # start() returns once the server accepts connections


class NatsMember:
    """The embedded NATS: started again on the same store directory and port."""

    def __init__(self, server: EmbeddedNats, name: str = "nats") -> None:
        self.server = server
        self.name = name
        self.log_file = server.log_file

    def exited(self) -> str | None:
        return None if self.server.is_running() else "stopped"

    def restart(self, attempt: int) -> None:
        self.server.start()

    def ready(self) -> bool:
        return True  # start() returns once JetStream is up
