"""Test support for whole-stack tests: the dev-stack runner in a subprocess, and its
environment in a scratch data directory."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tenpo.devtools.stack.net import port_in_use
from tests.conftest import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
#: Whole stacks take their ports below the kernel's ephemeral range (32768 and up): there, a
#: port chosen now can be taken before the stack binds it, as the source port of any outgoing
#: connection of the other test workers (it happened: a service failed to bind). Each xdist
#: worker has a band of its own, so two workers never pick the same port.
_FIRST_PORT = 20_000
_BAND = 1_500
_cursor: dict[int, int] = {}
#: Runners started by the current test; its fixture stops any a failed test left running.
_started: list[Runner] = []


def quiet_ports(size: int = 1) -> int:
    """The first of ``size`` consecutive ports nothing listens on, in this worker's band below
    the ephemeral range (see above)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    low = _FIRST_PORT + (int(worker) % 8 if worker.isdigit() else 0) * _BAND
    start = _cursor.get(low, low)
    for _ in range(_BAND):
        if start + size > low + _BAND:
            start = low
        if not any(port_in_use("127.0.0.1", port) for port in range(start, start + size)):
            _cursor[low] = start + size
            return start
        start += 1
    raise RuntimeError(f"no {size} free ports in {low}..{low + _BAND}")


class Runner:
    """``python -m tenpo.devtools.stack <command>`` in a subprocess, its output collected."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tenpo.devtools.stack", command],
            # Stops with this test process, should a crashed worker never reach its teardown.
            env={**env, "TENPO_STACK_EXIT_WITH_PARENT": "1"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _started.append(self)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never printed; output so far:\n{self.text}")

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float) -> None:
        """Ctrl-C, as a developer would; SIGKILL when that does not end it in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def processes_using(path: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if str(path) in command:
            found.append(f"{process.info['pid']}: {command}")
    return found


@pytest.fixture
def runner_env() -> Iterator[dict[str, str]]:
    with scratch_dir("tenpo-test-devstack-") as data_dir:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("TENPO_NATS_URL", "TENPO_POSTGRES_ADMIN_URL")
            and not key.endswith("_DATABASE_URL")
        }
        env |= {
            "TENPO_DATA_DIR": str(data_dir),
            "TENPO_SERVICES": "none",
            "TENPO_POSTGRES_PORT": str(quiet_ports()),
            "TENPO_NATS_PORT": str(quiet_ports()),
            "TENPO_NATS_MONITOR_PORT": str(quiet_ports()),
            # The mail catcher of the notification service, off the default 1025.
            "TENPO_SMTP_PORT": str(quiet_ports()),
        }
        yield env
        # A test that failed half-way (an assertion, a timeout) leaves its runner running:
        # stop it the way a developer would, so what it leaves behind is what Ctrl-C leaves.
        while _started:
            _started.pop().stop(timeout=120)
        leftovers = processes_using(data_dir)
        for pid in (int(entry.split(":")[0]) for entry in leftovers):
            psutil.Process(pid).kill()
        assert not leftovers, f"processes left behind: {leftovers}"


@contextlib.contextmanager
def whole_stack(
    prefix: str, extra_env: dict[str, str] | None = None, *, start_timeout: float = 600
) -> Iterator[tuple[str, Path]]:
    """``make run``'s stack in a scratch data directory on this worker's quiet ports:
    (gateway URL, data directory); stopped afterwards, stragglers killed."""
    from tenpo.devtools.stack.runner import READY_BANNER

    with scratch_dir(prefix) as data_dir:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("TENPO_NATS_URL", "TENPO_POSTGRES_ADMIN_URL", "TENPO_SERVICES")
            and not key.endswith("_DATABASE_URL")
        }
        base = quiet_ports(120)
        http_port = quiet_ports()
        env |= (extra_env or {}) | {
            "TENPO_DATA_DIR": str(data_dir),
            "TENPO_POSTGRES_PORT": str(quiet_ports()),
            "TENPO_NATS_PORT": str(quiet_ports()),
            "TENPO_NATS_MONITOR_PORT": "0",
            "TENPO_SMTP_PORT": str(quiet_ports()),
            "TENPO_PORT_BASE": str(base),
            "GATEWAY_HTTP_PORT": str(http_port),
            "TENPO_START_TIMEOUT": "300",
        }
        runner = Runner("run", env)
        try:
            runner.wait_for(READY_BANNER, timeout=start_timeout)
            yield f"http://127.0.0.1:{http_port}", data_dir
        finally:
            runner.stop(timeout=120)
            for entry in processes_using(data_dir):
                psutil.Process(int(entry.split(":")[0])).kill()
