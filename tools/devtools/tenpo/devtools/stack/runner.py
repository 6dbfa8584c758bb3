"""Devstack runner: the whole system on one machine (``make run``), or its migrations alone."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tenpo.devtools import keys as devkeys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack.config import ConfigError, ServiceSpec, StackConfig
from tenpo.devtools.stack.control import Progress, StackLock, _ShutdownSignals
from tenpo.devtools.stack.nats import EmbeddedNats, NatsCluster, NatsError
from tenpo.devtools.stack.net import port_in_use, url_host
from tenpo.devtools.stack.postgres import EmbeddedPostgres, PostgresError, ensure_database
from tenpo.devtools.stack.process import parent_death_preexec, stop_all
from tenpo.devtools.stack.supervisor import (
    Member,
    NatsMember,
    PostgresMember,
    Watchdog,
    describe_exit,
)
from tenpo.devtools.tracesink import TraceSink
from tenpo.kit.settings import ServiceSettings

STAFF_TOKEN_SCOPES = (
    "catalog:write",
    "inventory:write",
    "customers:read",
    "customers:write",
    "orders:read",
    "orders:write",
    "clients:write",
    "carts:read",
    "carts:write",
    "promotions:write",
    "notifications:read",
    "notifications:write",
    "notifications:send",
    "loyalty:write",
    "storecard:write",
    "customers:overview",
)
#: What the notification service may ask of the customer service (contacts, mail secrets).
#: The gateway's carrier webhook: the development signing secret (printed in the order
#: README); the gateway calls the order service with its own client credentials.
DEV_CARRIER_WEBHOOK_SECRET = "dev-carrier-webhook-secret-not-for-production"  # noqa: S105
STAFF_TOKEN_TTL = timedelta(hours=12)
#: How long services get to finish in-flight calls after SIGTERM before they are killed.
SERVICE_STOP_GRACE = 15.0
#: Migrations that run at once (each a process of its own, on its own database).
PARALLEL_MIGRATIONS = 3
#: The process that started this one (reparented once that one is gone).
_PARENT_AT_START = os.getppid()
#: Seeds that read what another service's seed leaves behind: the order seed takes the demo
#: customers' ids from dev-credentials.json, which the customer seed writes.
SEEDED_AFTER = {"order": "customer"}
#: Upper bound for one service's ``migrate`` or ``seed`` run.
SERVICE_COMMAND_TIMEOUT = 600.0
READY_BANNER = "Press Ctrl-C to stop."


class StackError(RuntimeError):
    """The stack cannot start or keep running; the message says why and where to look."""


_EXPECTED_ERRORS = (StackError, PostgresError, NatsError, ConfigError)


# -- small pieces -----------------------------------------------------------------------------


def load_database_passwords(path: Path, names: Sequence[str]) -> dict[str, str]:
    """Per-service database passwords: generated once, then read back so restarts work."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        document = {}
    passwords: dict[str, str] = document.setdefault("database_passwords", {})
    missing = [name for name in names if name not in passwords]
    for name in missing:
        passwords[name] = secrets.token_urlsafe(24)
    if missing:
        _write_private(path, json.dumps(document, indent=2) + "\n")
    return {name: passwords[name] for name in names}


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def _redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = url_host(parts.hostname or "")
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in tail)


# -- the stack --------------------------------------------------------------------------------


class DevStack:
    """The servers and service processes of one ``run`` or ``migrate``, and their teardown."""

    def __init__(self, config: StackConfig, out: TextIO) -> None:
        self.config = config
        self.progress = Progress(out)
        self.postgres: EmbeddedPostgres | None = None
        self.stop_postgres = False
        self.admin_url: str | None = config.external_postgres_admin_url
        #: The embedded NATS node(s): one, or a JetStream cluster (TENPO_STACK_NATS_CLUSTER).
        self.nats_nodes: list[EmbeddedNats] = []
        self.nats_url = config.external_nats_url or ",".join(
            f"nats://127.0.0.1:{config.nats_port + node}" for node in range(config.nats_nodes)
        )
        self.database_urls: dict[str, str] = dict(config.database_urls)
        self.auth_env: dict[str, str] = {}
        self.staff_token: str | None = None
        #: Extra environment per service (the notification service's token and SMTP port).
        self.extra_env: dict[str, dict[str, str]] = {}
        self.mail_catcher: MailCatcher | None = None
        self.trace_sink: TraceSink | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.issuer = os.environ.get("TENPO_AUTH_ISSUER") or str(
            ServiceSettings.model_fields["auth_issuer"].default
        )
        self.audience = os.environ.get("TENPO_AUTH_AUDIENCE") or "tenpo"

    @property
    def services(self) -> list[ServiceSpec]:
        return self.config.services

    # -- start-up steps ----------------------------------------------------------------------

    def start_postgres(self, stop: Literal["always", "if_started", "never"]) -> None:
        """Start the embedded server when one is needed; ``stop`` says whether close() stops
        it: always (``run`` owns the data directory), only if this call started it, never."""
        cfg = self.config
        if not cfg.needs_embedded_postgres:
            return
        self.postgres = EmbeddedPostgres(
            cfg.postgres_dir, cfg.postgres_port, cfg.host, log_file=cfg.log_file("postgres")
        )
        with self.progress.step("postgres") as outcome:
            already_running = self.postgres.is_running()
            # Decided before start() so that an interrupt half-way still stops the server.
            self.stop_postgres = stop == "always" or (stop == "if_started" and not already_running)
            self.postgres.start()
            outcome.detail = f"{cfg.host}:{cfg.postgres_port}"
            if already_running:
                outcome.detail += " (was already running)"
        self.admin_url = self.postgres.admin_url()

    def ensure_databases(self) -> None:
        wanted = [
            s.name for s in self.services if s.has_database and s.name not in self.database_urls
        ]
        if not wanted:
            return
        if self.admin_url is None:
            raise StackError("no PostgreSQL to create databases on")
        passwords = load_database_passwords(self.config.secrets_file, wanted)
        with self.progress.step("databases") as outcome:
            for name in wanted:
                self.database_urls[name] = ensure_database(self.admin_url, name, passwords[name])
            outcome.status = "done"
            outcome.detail = ", ".join(wanted)

    @property
    def nats(self) -> EmbeddedNats | None:
        return self.nats_nodes[0] if self.nats_nodes else None

    def start_nats(self) -> None:
        cfg = self.config
        if cfg.external_nats_url:
            return
        count = cfg.nats_nodes
        route_ports = tuple(cfg.nats_cluster_port + node for node in range(count))
        for node in range(count):
            name = cfg.nats_node_name(node)
            self.nats_nodes.append(
                EmbeddedNats(
                    cfg.nats_node_dir(node),
                    cfg.nats_port + node,
                    cfg.nats_monitor_port + node if cfg.nats_monitor_port else None,
                    cfg.host,
                    log_file=cfg.log_file(name),
                    server_name="tenpo-dev" if count == 1 else f"tenpo-dev-{node + 1}",
                    die_with_parent=True,
                    cluster=(
                        NatsCluster("tenpo-dev", route_ports[node], route_ports)
                        if count > 1
                        else None
                    ),
                )
            )
        label = "nats" if count == 1 else f"nats cluster ({count} nodes)"
        with self.progress.step(label) as outcome:
            # A cluster's nodes are ready only once they found each other: start all first.
            for server in self.nats_nodes:
                server.launch()
            for server in self.nats_nodes:
                server.wait_ready(60.0)
            outcome.detail = self.nats_url

    def ensure_keys(self) -> None:
        # Development signing keys: services verify tokens with the JWKS, and the staff token
        # printed at the end lets a developer call the APIs right away.
        with self.progress.step("keys") as outcome:
            keys = devkeys.ensure_dev_keys(self.config.keys_dir)
            self.auth_env = {"TENPO_AUTH_JWKS_FILE": str(keys.jwks_path)}
            self.staff_token = devkeys.mint_token(
                keys.private_key_pem,
                keys.kid,
                subject="dev-staff",
                kind="staff",
                issuer=self.issuer,
                audience=self.audience,
                scopes=STAFF_TOKEN_SCOPES,
                ttl=STAFF_TOKEN_TTL,
            )
            _write_private(self.config.token_file, self.staff_token + "\n")
            if any(s.name == "gateway" for s in self.services):
                self.extra_env.setdefault("gateway", {})["GATEWAY_CARRIER_WEBHOOK_SECRET"] = (
                    DEV_CARRIER_WEBHOOK_SECRET
                )
            outcome.status = "done"
            outcome.detail = _display(self.config.keys_dir)

    def start_mail_catcher(self) -> None:
        """A real SMTP server that accepts every mail the notification service sends and
        keeps it as an .eml file (the messages are also listed by ListMessages)."""
        if not any(s.name == "notification" for s in self.services):
            return
        cfg = self.config
        with self.progress.step("mail catcher") as outcome:
            if port_in_use(cfg.host, cfg.smtp_port):
                raise StackError(
                    f"port {cfg.smtp_port} (mail catcher) is in use; set TENPO_SMTP_PORT"
                )
            self.mail_catcher = MailCatcher(cfg.host, cfg.smtp_port, cfg.mail_dir)
            self.mail_catcher.start()
            outcome.detail = f"smtp {cfg.host}:{cfg.smtp_port} -> {_display(cfg.mail_dir)}"
        self.extra_env.setdefault("notification", {})["NOTIFICATION_SMTP_PORT"] = str(cfg.smtp_port)

    def start_trace_sink(self) -> None:
        """With TENPO_STACK_TRACES=1: a local OTLP receiver keeping every span in
        ``.data/traces/`` (``python -m tenpo.devtools.tracesink``), and every service
        exporting to it."""
        cfg = self.config
        if not cfg.traces:
            return
        with self.progress.step("trace sink") as outcome:
            if port_in_use(cfg.host, cfg.otlp_port):
                raise StackError(
                    f"port {cfg.otlp_port} (trace sink) is in use; set TENPO_OTLP_PORT"
                )
            self.trace_sink = TraceSink(cfg.host, cfg.otlp_port, cfg.traces_dir)
            self.trace_sink.start()
            outcome.detail = f"otlp {self.trace_sink.endpoint} -> {_display(cfg.traces_dir)}"
        for spec in self.services:
            self.extra_env.setdefault(spec.name, {})["TENPO_OTEL_EXPORTER_OTLP_ENDPOINT"] = (
                self.trace_sink.endpoint
            )

    def migrate_all(self, specs: Sequence[ServiceSpec]) -> None:
        """Migrate every database at once: each service has its own, and most of a migration
        run is a Python process starting, which two cores do side by side. One line per
        service as it finishes; the first failure is raised after the others have ended."""
        self._side_by_side(specs, "migrate")

    def migrate_and_seed_all(self, specs: Sequence[ServiceSpec]) -> None:
        """Migrate and seed every database, one ``seed`` process per service (it migrates
        first): one Python start per service instead of one to migrate and one to seed, and
        several at once, a seed that reads another's output (SEEDED_AFTER) once that one has
        finished."""
        self._side_by_side(specs, "seed")

    def _side_by_side(self, specs: Sequence[ServiceSpec], command: str) -> None:
        failures: list[StackError] = []
        after = SEEDED_AFTER if command == "seed" else {}
        names = {spec.name for spec in specs}
        # Those another one waits for go first, so that a waiting one never holds every worker.
        ordered = sorted(specs, key=lambda spec: spec.name not in after.values())
        submitted: dict[str, Future[None]] = {}

        def run(spec: ServiceSpec) -> None:
            first = after.get(spec.name)
            if first is not None and first in names:
                try:
                    submitted[first].result()
                except StackError:
                    raise StackError(f"{command} {spec.name} skipped: {first} failed") from None
            self._service_command(spec, command)

        with ThreadPoolExecutor(max_workers=PARALLEL_MIGRATIONS) as pool:
            started = time.monotonic()
            running: dict[Future[None], ServiceSpec] = {}
            for spec in ordered:
                submitted[spec.name] = pool.submit(run, spec)
                running[submitted[spec.name]] = spec
            for future in as_completed(running):
                label = f"{command} {running[future].name}"
                error = future.exception()
                if isinstance(error, StackError):
                    failures.append(error)
                elif error is not None:
                    raise error
                self.progress.finished(label, "failed" if error else "done", started)
        if failures:
            raise failures[0]

    def _service_command(self, spec: ServiceSpec, command: str) -> None:
        log_file = self.config.log_file(spec.name)
        with self._open_log(log_file, command) as log_output:
            try:
                result = subprocess.run(  # noqa: S603
                    [sys.executable, "-m", spec.module, command],
                    env=self.service_env(spec),
                    cwd=self.config.root_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log_output,
                    stderr=subprocess.STDOUT,
                    timeout=SERVICE_COMMAND_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise StackError(
                    f"`python -m {spec.module} {command}` still running after "
                    f"{SERVICE_COMMAND_TIMEOUT:.0f} s; see {_display(log_file)}"
                ) from None
        if result.returncode != 0:
            raise StackError(
                f"`python -m {spec.module} {command}` failed with exit code "
                f"{result.returncode}; see {_display(log_file)}\n{_log_tail(log_file)}"
            )

    def start_services(self) -> None:
        busy = [
            f"{port} ({spec.name})"
            for spec in self.services
            for port in (*map(spec.replica_port, range(spec.replicas)), spec.http_port)
            if port is not None and port_in_use(self.config.host, port)
        ]
        if busy:
            raise StackError(
                f"port(s) already in use: {', '.join(busy)}. A service left over from an earlier "
                "run? Stop it, or move the ports (TENPO_PORT_BASE, <NAME>_GRPC_PORT)."
            )
        started = time.monotonic()
        for spec in self.services:
            for replica in range(spec.replicas):
                self.spawn_service(spec, "serve", replica)
        self._wait_until_serving(started)

    def spawn_service(self, spec: ServiceSpec, what: str, replica: int = 0) -> None:
        """``python -m services.<name>`` in the background, output appended to its log
        (one log and one process name per replica: ``inventory``, ``inventory-2``)."""
        name = spec.process_name(replica)
        with self._open_log(self.config.log_file(name), what) as log_output:
            self.processes[name] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", spec.module],
                env=self.service_env(spec, replica),
                cwd=self.config.root_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_output,
                stderr=subprocess.STDOUT,
                # Own process group: a terminal's Ctrl-C reaches only the runner, which
                # then stops services before the servers they depend on.
                start_new_session=True,
                preexec_fn=parent_death_preexec(),
            )

    def _wait_until_serving(self, started: float) -> None:
        deadline = started + self.config.start_timeout
        host = url_host(self.config.host)
        pending = {
            spec.process_name(replica): spec.replica_port(replica)
            for spec in self.services
            for replica in range(spec.replicas)
        }
        channels = {name: grpc.insecure_channel(f"{host}:{port}") for name, port in pending.items()}
        try:
            while pending:
                for name, port in list(pending.items()):
                    self._raise_if_exited(name, "while starting")
                    if self._serving(channels[name]):
                        del pending[name]
                        elapsed = time.monotonic() - started
                        self.progress.line(
                            f"  {'start ' + name:<24} ready ({elapsed:.1f} s)  "
                            f"grpc {self.config.host}:{port}"
                        )
                if pending and time.monotonic() > deadline:
                    logs = ", ".join(_display(self.config.log_file(name)) for name in pending)
                    raise StackError(
                        f"{', '.join(pending)} not serving after {self.config.start_timeout:.0f} s "
                        f"(TENPO_START_TIMEOUT); see {logs}"
                    )
                if pending:
                    time.sleep(0.25)
        finally:
            for channel in channels.values():
                channel.close()

    @staticmethod
    def _serving(channel: grpc.Channel, timeout: float = 1.0) -> bool:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def _raise_if_exited(self, name: str, when: str) -> None:
        code = self.processes[name].poll()
        if code is not None:
            log_file = self.config.log_file(name)
            raise StackError(
                f"{name} exited with code {code} {when}; see {_display(log_file)}\n"
                f"{_log_tail(log_file)}"
            )

    def service_env(self, spec: ServiceSpec, replica: int = 0) -> dict[str, str]:
        """The environment of a service process (names follow tenpo.kit.settings)."""
        prefix = spec.env_prefix
        env = {
            # Defaults a developer may override from their shell.
            "TENPO_ENVIRONMENT": "development",
            "TENPO_LOG_FORMAT": "json",
            **os.environ,
            "TENPO_AUTH_ISSUER": self.issuer,
            "TENPO_AUTH_AUDIENCE": self.audience,
            **self.auth_env,
            "TENPO_NATS_URL": self.nats_url,
            # Where seeds leave development credentials (the customer service's devices).
            "TENPO_DATA_DIR": str(self.config.data_dir),
            f"{prefix}SERVICE_NAME": spec.name,
            f"{prefix}GRPC_PORT": str(spec.replica_port(replica)),
            # Log lines reach the log file as they happen, not when a buffer fills.
            "PYTHONUNBUFFERED": "1",
            # Every database was migrated before any service starts (migrate_and_seed_all):
            # replicas and restarts do not migrate again.
            f"{prefix}MIGRATE_ON_START": "false",
        }
        for other in self.services:
            env[f"TENPO_{other.name.upper()}_TARGET"] = other.target
        if self.config.nats_nodes > 1 and not self.config.external_nats_url:
            # As in production: every stream on three nodes, so losing one loses nothing.
            env["TENPO_NATS_STREAM_REPLICAS"] = "3"
        if spec.name in self.database_urls:
            env[f"{prefix}DATABASE_URL"] = self.database_urls[spec.name]
        if spec.http_port is not None:
            env[f"{prefix}HTTP_PORT"] = str(spec.http_port)
        gateway = next((s for s in self.services if s.name == "gateway"), None)
        if spec.name == "notification" and gateway is not None and gateway.http_port:
            # Tracking links and pixels point at the gateway's public routes.
            env.setdefault(
                "NOTIFICATION_PUBLIC_BASE_URL",
                f"http://{url_host(self.config.host)}:{gateway.http_port}",
            )
        env.update(self.extra_env.get(spec.name, {}))
        return env

    @contextlib.contextmanager
    def _open_log(self, path: Path, what: str) -> Iterator[IO[bytes]]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log_output:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log_output.write(f"\n=== tenpo devstack: {what} at {stamp} ===\n".encode())
            log_output.flush()
            yield log_output

    # -- running -----------------------------------------------------------------------------

    def summary(self) -> str:
        cfg = self.config
        rows: list[tuple[str, str, str]] = []
        if self.postgres is not None:
            address = f"postgresql://postgres@{url_host(cfg.host)}:{cfg.postgres_port}/postgres"
            rows.append(("postgres", address, _display(self.postgres.log_file)))
        elif self.admin_url is not None:
            rows.append(("postgres", _redact(self.admin_url), "(external)"))
        for node, server in enumerate(self.nats_nodes):
            address = server.url
            if server.monitor_url:
                address += f"  (monitor {server.monitor_url})"
            rows.append((cfg.nats_node_name(node), address, _display(server.log_file)))
        if not self.nats_nodes:
            rows.append(("nats", _redact(self.nats_url), "(external)"))
        if self.trace_sink is not None:
            rows.append(
                ("trace sink", f"otlp {self.trace_sink.endpoint}", _display(cfg.traces_dir))
            )
        if self.mail_catcher is not None:
            address = f"smtp {cfg.host}:{cfg.smtp_port}"
            rows.append(("mail catcher", address, _display(cfg.mail_dir) + "/*.eml"))
        for spec in self.services:
            for replica in range(spec.replicas):
                name = spec.process_name(replica)
                address = f"grpc {cfg.host}:{spec.replica_port(replica)}"
                if spec.http_port is not None:
                    address = f"http://{url_host(cfg.host)}:{spec.http_port}  {address}"
                rows.append((name, address, _display(cfg.log_file(name))))
        header = ("process", "address", "log")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
        lines = [
            f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in [header, *rows]
        ]
        return "\n".join(lines)

    def watch(self, interval: float = 0.5) -> None:
        """Block until interrupted, restarting whatever dies meanwhile (see supervisor)."""
        members: list[Member] = []
        if self.postgres is not None and self.stop_postgres:
            members.append(PostgresMember(self.postgres))
        members += [
            NatsMember(server, self.config.nats_node_name(node))
            for node, server in enumerate(self.nats_nodes)
        ]
        services = [
            _ServiceMember(self, spec, replica)
            for spec in self.services
            for replica in range(spec.replicas)
        ]
        watchdog = Watchdog([*members, *services], report=self._report)
        # A harness that starts stacks (the tests) asks for them to stop with it: a test
        # worker that dies would otherwise leave a whole stack holding its ports.
        parent = _PARENT_AT_START if os.environ.get("TENPO_STACK_EXIT_WITH_PARENT") else None
        try:
            while True:
                watchdog.tick()
                time.sleep(interval)
                if parent is not None and os.getppid() != parent:
                    self._report("the process that started the stack is gone: stopping")
                    raise KeyboardInterrupt
        finally:
            for service in services:
                service.close()

    def _report(self, message: str) -> None:
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        self.progress.line(f"  {stamp} {message}")

    def close(self) -> None:
        """Stop what this stack started, dependents first; every step runs even if one fails."""
        if self.processes:
            with self._best_effort("stop services"):
                stop_all(list(self.processes.values()), SERVICE_STOP_GRACE)
                self.processes.clear()
        if self.trace_sink is not None:
            with self._best_effort("stop trace sink"):
                self.trace_sink.stop()
                self.trace_sink = None
        if self.mail_catcher is not None:
            with self._best_effort("stop mail catcher"):
                self.mail_catcher.stop()
                self.mail_catcher = None
        for node, server in enumerate(self.nats_nodes):
            with self._best_effort(f"stop {self.config.nats_node_name(node)}"):
                server.stop()
        if self.postgres is not None and self.stop_postgres:
            with self._best_effort("stop postgres"):
                self.postgres.stop()

    @contextlib.contextmanager
    def _best_effort(self, label: str) -> Iterator[None]:
        try:
            with self.progress.step(label) as outcome:
                outcome.status = "done"
                yield
        except Exception as error:
            # Teardown goes on to the next server whatever went wrong with this one.
            print(f"  warning: {label}: {error}", file=sys.stderr)


# -- supervised members -----------------------------------------------------------------------


class _ServiceMember:
    """A service process: restarted as it was started, ready when its health check says so."""

    def __init__(self, stack: DevStack, spec: ServiceSpec, replica: int = 0) -> None:
        self.stack = stack
        self.spec = spec
        self.replica = replica
        self.name = spec.process_name(replica)
        self.log_file = stack.config.log_file(self.name)
        self._channel: grpc.Channel | None = None

    def exited(self) -> str | None:
        code = self.stack.processes[self.name].poll()
        return None if code is None else describe_exit(code)

    def restart(self, attempt: int) -> None:
        # Worker processes the dead one forked may still hold the port: its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.stack.processes[self.name].pid, signal.SIGKILL)
        self.stack.spawn_service(self.spec, f"serve (restart {attempt})", self.replica)

    def ready(self) -> bool:
        if self._channel is None:
            host = url_host(self.stack.config.host)
            self._channel = grpc.insecure_channel(f"{host}:{self.spec.replica_port(self.replica)}")
        return DevStack._serving(self._channel, timeout=0.5)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


# -- commands ---------------------------------------------------------------------------------


def telemetry_hint(env: Mapping[str, str], sink: TraceSink | None = None) -> str:
    """Where the services' traces and metrics go, or how to send them somewhere: any
    OTLP/gRPC receiver (an OpenTelemetry Collector, Jaeger all-in-one on 4317) works."""
    if sink is not None:
        return (
            f"Telemetry: every service sends its spans to the local trace sink ({sink.endpoint}); "
            "`python -m tenpo.devtools.tracesink list` lists the latest traces, "
            "`... show <trace id>` prints one across services (docs/operations.md)."
        )
    endpoint = env.get("TENPO_OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        return f"Telemetry: traces and metrics go to {endpoint} (OTLP/gRPC)."
    if (env.get("TENPO_OTEL_CONSOLE") or "").lower() in {"1", "true", "yes"}:
        return "Telemetry: traces and metrics are printed to each service's log."
    return (
        "Telemetry: off. To see traces and metrics, start any OTLP/gRPC receiver (an "
        "OpenTelemetry Collector, Jaeger all-in-one) and run with "
        "TENPO_OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317, or TENPO_OTEL_CONSOLE=true; "
        "or TENPO_STACK_TRACES=1 for a local sink (`python -m tenpo.devtools.tracesink`)."
    )


def run(config: StackConfig, out: TextIO = sys.stdout) -> int:
    """Start everything, print where it listens, serve until Ctrl-C/SIGTERM, stop everything."""
    lock = StackLock(config.lock_file)
    if not lock.acquire("run"):
        print(
            f"error: Tenpo's devstack is already running on {config.data_dir} ({lock.holder()}); "
            "stop it first (Ctrl-C in its terminal)",
            file=sys.stderr,
        )
        return 1
    stack = DevStack(config, out)
    progress = stack.progress
    code = 0
    with _ShutdownSignals() as signals:
        try:
            progress.line(f"Starting Tenpo (data in {_display(config.data_dir)})")
            stack.start_postgres("always")
            stack.ensure_databases()
            stack.start_nats()
            stack.ensure_keys()
            stack.start_mail_catcher()
            stack.start_trace_sink()
            stack.migrate_and_seed_all([spec for spec in stack.services if spec.has_database])
            stack.start_services()
            progress.line()
            progress.line("Tenpo is running:")
            progress.line()
            progress.line(stack.summary())
            if not stack.services:
                progress.line(
                    "  (no services: none selected by TENPO_SERVICES, or none in "
                    f"{_display(config.root_dir / 'services')}/ has a __main__.py)"
                )
            if stack.staff_token:
                progress.line()
                hours = STAFF_TOKEN_TTL.total_seconds() / 3600
                progress.line(
                    f"Development staff token (valid {hours:.0f} h, "
                    f"also in {_display(config.token_file)}):"
                )
                progress.line(f"  {stack.staff_token}")
            progress.line()
            progress.line(telemetry_hint(os.environ, stack.trace_sink))
            credentials = config.data_dir / "dev-credentials.json"
            if credentials.exists():
                progress.line()
                progress.line(
                    "Demo sign-ins (customers, staff, store devices' client ids and secrets): "
                    f"{_display(credentials)}"
                )
            progress.line()
            progress.line(READY_BANNER)
            stack.watch()
        except KeyboardInterrupt:
            progress.line()
            progress.line("Stopping Tenpo")
        except _EXPECTED_ERRORS as error:
            print(f"\nerror: {error}", file=sys.stderr)
            code = 1
        finally:
            signals.stopping = True
            stack.close()
            lock.release()
    return code


def migrate(config: StackConfig, out: TextIO = sys.stdout) -> int:
    """Apply every service's migrations, on the embedded PostgreSQL (started if needed and
    stopped again) or on the databases the environment names."""
    with_database = [spec for spec in config.services if spec.has_database]
    if not with_database:
        out.write("No service with a database: nothing to migrate.\n")
        return 0
    lock = StackLock(config.lock_file)
    owns_servers = lock.acquire("migrate")
    if not owns_servers and "migrate" in lock.holder():
        print(f"error: another migrate is running ({lock.holder()})", file=sys.stderr)
        return 1
    stack = DevStack(config, out)
    code = 0
    with _ShutdownSignals() as signals:
        try:
            # Without the lock a `run` owns the servers: use its PostgreSQL, never stop it.
            stack.start_postgres("if_started" if owns_servers else "never")
            stack.ensure_databases()
            stack.migrate_all(with_database)
        except KeyboardInterrupt:
            code = 130
        except _EXPECTED_ERRORS as error:
            print(f"\nerror: {error}", file=sys.stderr)
            code = 1
        finally:
            signals.stopping = True
            stack.close()
            lock.release()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tenpo.devtools.stack",
        description="Tenpo on one machine: embedded PostgreSQL and NATS, every service.",
    )
    parser.add_argument("command", choices=["run", "migrate"])
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  warning: %(message)s")
    try:
        config = StackConfig.from_env()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.command == "run":
        return run(config)
    return migrate(config)
