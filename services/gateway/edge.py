"""Gateway edge: HAProxy on the gateway's gRPC port, so that the hot calls of signed-in
devices and shoppers cross one compiled proxy instead of a Python gRPC server and client.

With ``GATEWAY_EDGE=haproxy`` the gateway starts HAProxy as its child, from a configuration
rendered here out of the contracts' access rules, and its own Python ingress listens on
``edge_ingress_port`` (loopback) behind it. On Kubernetes the same files are rendered by
``python -m services.gateway.edge DIRECTORY`` in an init container and HAProxy runs as a
container of the gateway's pod (``deploy/components/grpc-edge``).

HAProxy routes a call straight to the service that owns it (HTTP/2 cleartext, bytes
untouched) only when all of these hold:

* the method is unary, its rule admits a non-service caller (public, customer, device,
  staff) and is neither a credentials method nor one with the sign-in limit;
* the call carries ``authorization`` and no ``x-api-key``: the services verify tokens
  themselves (the kit's call guard, which also enforces the same access rule), and nothing
  the gateway alone would add (a key's channel and its proof) is needed.

Everything else — publishable keys, anonymous calls, streams (their per-principal and
per-address caps), service-only methods such as ``CommitReservation``, reflection, health,
unknown paths — goes to the Python ingress, which keeps every check and learns the client's
address from ``x-tenpo-edge-client`` (set here, never taken from the client). On every call
HAProxy drops ``x-tenpo-channel``, ``x-tenpo-channel-proof``, ``x-tenpo-edge`` and
``x-tenpo-edge-client`` as sent by the client; on a direct call it sets
``x-tenpo-edge: direct``, for which the services' call guard applies the per-principal rate
limit the gateway would have (``edge_principal_rate``). The services cap a request's size
themselves (``max_request_bytes``). HAProxy waits at most ``backend_timeout_seconds`` for a
direct call's answer, retries a connection refused on the next replica, checks each replica
every two seconds, caps connections per client address, and answers its own failures as the
Python ingress does: UNAVAILABLE ``BACKEND_UNAVAILABLE`` and DEADLINE_EXCEEDED
``BACKEND_TIMEOUT``, with the status details. It logs nothing (no tokens, no addresses).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import ipaddress
import logging
import math
import resource
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import grpc

from services.gateway.config import GatewaySettings
from services.gateway.descriptors import Method, Schema
from services.gateway.errors import STATUS_DETAILS_KEY, backend_failure_status
from tenpo.common.v1 import access_pb2
from tenpo.kit.auth import CHANNEL_HEADER, CHANNEL_PROOF_HEADER
from tenpo.kit.guard import EDGE_CLIENT_HEADER, EDGE_HEADER

log = logging.getLogger("tenpo.gateway.edge")

#: Audiences whose signed-in callers may go straight to the service.
_DIRECT_AUDIENCES = frozenset(
    {
        access_pb2.AUDIENCE_PUBLIC,
        access_pb2.AUDIENCE_CUSTOMER,
        access_pb2.AUDIENCE_DEVICE,
        access_pb2.AUDIENCE_STAFF,
    }
)
#: Request headers only the gateway (or the edge) may set: dropped from every call.
GATEWAY_ONLY_HEADERS = (CHANNEL_HEADER, CHANNEL_PROOF_HEADER, EDGE_HEADER, EDGE_CLIENT_HEADER)
CONFIG_FILE = "haproxy.cfg"
MAP_FILE = "direct.map"
_ERROR_FILES = {
    503: ("unavailable.http", grpc.StatusCode.UNAVAILABLE),
    504: ("timeout.http", grpc.StatusCode.DEADLINE_EXCEEDED),
}


def is_direct(method: Method) -> bool:
    """Whether a signed-in caller's call of ``method`` may skip the Python ingress."""
    rule = method.access
    return (
        rule is not None
        and not method.client_streaming
        and not method.server_streaming
        and not rule.sign_in_rate_limit
        and access_pb2.AUDIENCE_CREDENTIALS not in rule.audiences
        and bool(rule.audiences & _DIRECT_AUDIENCES)
    )


def direct_methods(schema: Schema, settings: GatewaySettings) -> dict[str, list[str]]:
    """The direct paths (``/tenpo.catalog.v1.CatalogService/GetProduct``) by owning service,
    for the services with a configured target."""
    by_owner: dict[str, list[str]] = {}
    for path, method in sorted(schema.methods.items()):
        if is_direct(method) and settings.target(method.owner):
            by_owner.setdefault(method.owner, []).append(path)
    return by_owner


def servers(target: str) -> list[str]:
    """HAProxy server addresses of a gRPC target (``catalog:50051``,
    ``ipv4:127.0.0.1:50052,127.0.0.1:50152``, ``dns:///catalog:50051``)."""
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        target = target.removeprefix(prefix)
    return [address.strip() for address in target.split(",") if address.strip()]


def _is_literal(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def error_file(code: grpc.StatusCode) -> str:
    """A gRPC Trailers-Only answer (HTTP 200, the status in the headers) that HAProxy sends
    for its own failures; HAProxy reads error files as HTTP/1 responses."""
    status = backend_failure_status(code)
    details = base64.b64encode(status.SerializeToString()).decode().rstrip("=")
    lines = [
        "HTTP/1.1 200 OK",
        "content-type: application/grpc",
        f"grpc-status: {status.code}",
        f"grpc-message: {status.message}",
        f"{STATUS_DETAILS_KEY}: {details}",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _seconds(value: float) -> str:
    return f"{max(1, math.ceil(value * 1000))}ms"


def render(
    settings: GatewaySettings,
    schema: Schema,
    *,
    host: str,
    port: int,
    ingress: str,
    directory: Path,
) -> dict[str, str]:
    """The edge's files by name: HAProxy on ``host:port``, the Python ingress at ``ingress``
    (``127.0.0.1:50060``); the configuration names the other files inside ``directory``."""
    direct = direct_methods(schema, settings)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    per_address = settings.edge_max_connections_per_address
    lines = [
        "global",
        "  nbthread 1",  # one core's worth: the services need the others
        # A port someone else holds is an error, not silently shared (SO_REUSEPORT would let
        # a stale edge take half of the calls).
        "  noreuseport",
        f"  maxconn {settings.edge_max_connections}",
        "defaults",
        "  mode http",
        "  timeout connect 2s",
        # Idle client connections; the ingress ends a stream after stream_max_seconds.
        f"  timeout client {_seconds(settings.stream_max_seconds + 60)}",
        f"  timeout server {_seconds(settings.backend_timeout_seconds)}",
        "  retries 2",
        "  option redispatch 1",  # a connection refused is retried on the next replica
        "  default-server check inter 2s fall 2 rise 1 proto h2",
        "frontend grpc",
        f"  bind {bind} proto h2",
        f"  maxconn {settings.edge_max_connections}",
    ]
    if per_address:
        lines += [
            "  stick-table type ipv6 size 100k expire 60s store conn_cur",
            "  tcp-request connection track-sc0 src",
            f"  tcp-request connection reject if {{ sc0_conn_cur gt {per_address} }}",
        ]
    lines += [f"  http-request del-header {name}" for name in GATEWAY_ONLY_HEADERS]
    lines += [
        f"  http-request set-var(txn.owner) path,map_str({directory / MAP_FILE})"
        " if { req.hdr(authorization) -m found } !{ req.hdr(x-api-key) -m found }",
        "  use_backend direct_%[var(txn.owner)] if { var(txn.owner) -m found }",
        "  default_backend ingress",
    ]
    errors = [f"  errorfile {code} {directory / name}" for code, (name, _) in _ERROR_FILES.items()]
    for owner in direct:
        lines += [
            f"backend direct_{owner}",
            f"  http-request set-header {EDGE_HEADER} direct",
            *errors,
        ]
        for index, address in enumerate(servers(settings.target(owner) or "")):
            resolve = "" if _is_literal(address) else " resolvers default init-addr last,libc,none"
            lines.append(f"  server {owner}{index} {address}{resolve}")
    lines += [
        "backend ingress",
        f"  http-request set-header {EDGE_CLIENT_HEADER} %[src]",
        f"  timeout server {_seconds(settings.stream_max_seconds + 60)}",
        *errors,
        f"  server ingress {ingress}",
        "",
    ]
    routes = [f"{path} {owner}" for owner, paths in direct.items() for path in paths]
    files = {CONFIG_FILE: "\n".join(lines), MAP_FILE: "\n".join([*routes, ""])}
    for name, code in _ERROR_FILES.values():
        files[name] = error_file(code)
    return files


def write(files: dict[str, str], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory / CONFIG_FILE


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def haproxy_binary(settings: GatewaySettings) -> str:
    found = shutil.which(settings.edge_binary or "haproxy") or (
        "/usr/sbin/haproxy" if not settings.edge_binary else None
    )
    if found is None or not Path(found).exists():
        raise RuntimeError(
            "GATEWAY_EDGE=haproxy needs HAProxy ≥ 2.6 (Debian: apt-get install haproxy; "
            "or GATEWAY_EDGE_BINARY)"
        )
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: SIGTERM to HAProxy when the gateway dies, even by SIGKILL.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Edge:
    """HAProxy as a child process; ``run`` returns (raises) when HAProxy exits, so the kit's
    supervisor starts it again."""

    def __init__(
        self, settings: GatewaySettings, schema: Schema, host: str, port: int, ingress_port: int
    ):
        self.host = host
        self.port = port
        self.ingress_port = ingress_port
        self._settings = settings
        self._schema = schema
        self._process: asyncio.subprocess.Process | None = None
        self._directory = Path(tempfile.mkdtemp(prefix="tenpo-edge-"))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def files(self) -> dict[str, str]:
        # HAProxy wants two file handles per connection and refuses to start without them.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = (hard - 64) // 2 if hard != resource.RLIM_INFINITY else None
        settings = self._settings
        if room is not None and room < settings.edge_max_connections:
            settings = settings.model_copy(update={"edge_max_connections": max(1, room)})
        return render(
            settings,
            self._schema,
            host=self.host,
            port=self.port,
            ingress=f"127.0.0.1:{self.ingress_port}",
            directory=self._directory,
        )

    async def run(self) -> None:
        config = write(self.files(), self._directory)
        self._process = await asyncio.create_subprocess_exec(
            haproxy_binary(self._settings),
            "-db",  # foreground, one process: its exit is the edge's
            "-f",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        log.info("edge started", extra={"port": self.port, "ingress_port": self.ingress_port})
        try:
            assert self._process.stderr is not None
            said = await self._process.stderr.read()  # until it exits
            code = await self._process.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise
        alert = said.decode(errors="replace").strip()[-600:]
        raise RuntimeError(f"the edge (haproxy) exited with {code}: {alert}")

    async def stop(self) -> None:
        process, self._process = self._process, None
        try:
            if process is None or process.returncode is not None:
                return
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m services.gateway.edge [DIRECTORY]``: the edge's files for the current
    settings (HAProxy on ``grpc_port``, the ingress on ``edge_ingress_port`` of this pod),
    written into DIRECTORY, or the configuration printed."""
    from services.gateway.descriptors import load_schema

    parser = argparse.ArgumentParser(prog="python -m services.gateway.edge")
    parser.add_argument("directory", nargs="?", type=Path)
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    ingress = settings.edge_ingress_port or settings.grpc_port + 10
    directory = args.directory or Path("/etc/tenpo-edge")
    files = render(
        settings,
        load_schema(settings.descriptor_set),
        host=settings.grpc_host,
        port=settings.grpc_port,
        ingress=f"127.0.0.1:{ingress}",
        directory=directory.resolve(),
    )
    if args.directory is None:
        sys.stdout.write(files[CONFIG_FILE])
    else:
        write(files, args.directory)


if __name__ == "__main__":
    main()
