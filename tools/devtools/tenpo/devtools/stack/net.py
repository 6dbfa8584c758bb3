"""Devstack networking helpers: free ports, waiting for listeners, URL plumbing."""

from __future__ import annotations

import socket
import time
from urllib.parse import quote


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick; racy, but fine for tests)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until host:port accepts a connection; False when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(host, port):
            return True
        time.sleep(0.05)
    return False


def url_host(host: str) -> str:
    """The host as it must appear in a URL (IPv6 literals go in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def url_quote(value: str) -> str:
    """Percent-encode a URL user or password component."""
    return quote(value, safe="")
