"""The floor of any gRPC proxy hop: HAProxy (C, one thread, HTTP/2 on both sides, every call
forwarded to one backend) with no check, no routing rule and no log — the least any ingress,
compiled or not, could cost on the same cores. The gateway suite measures it beside the
ingress and direct gRPC, so the ingress goal is read against what a hop costs at all.

HAProxy comes from Debian's ``haproxy`` package (``make bench`` installs it as root when
missing); without it the suite says so and measures the rest."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import stop


def available() -> bool:
    return shutil.which("haproxy") is not None


def config(port: int, backend_port: int) -> str:
    return "\n".join(
        [
            "global",
            "  nbthread 1",
            "  maxconn 2000",
            "defaults",
            "  mode http",
            "  timeout connect 5s",
            "  timeout client 60s",
            "  timeout server 60s",
            "frontend grpc",
            f"  bind 127.0.0.1:{port} proto h2",
            "  default_backend service",
            "backend service",
            f"  server one 127.0.0.1:{backend_port} proto h2",
            "",
        ]
    )


@contextmanager
def haproxy(port: int, backend_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy in the foreground (``-db``: one process, whose CPU is the proxy's) on
    ``port``, forwarding every call to ``backend_port``."""
    directory = Path(tempfile.mkdtemp(prefix="tenpo-bench-haproxy-"))
    path = directory / "haproxy.cfg"
    path.write_text(config(port, backend_port))
    log = directory / "haproxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=output
        )
    try:
        _wait_listening(port, process, log)
        yield process
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], log: Path, seconds: float = 10
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = log.read_text(errors="replace")[-500:]
            raise RuntimeError(f"haproxy exited with {process.returncode}: {error}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("haproxy did not listen")
