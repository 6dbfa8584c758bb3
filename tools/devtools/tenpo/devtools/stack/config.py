"""Devstack configuration: which services exist, their ports, data paths, external servers."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tenpo.devtools.stack.net import port_in_use

DEFAULT_POSTGRES_PORT = 55432
DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
DEFAULT_PORT_BASE = 50050
DEFAULT_GATEWAY_HTTP_PORT = 8080
#: The mail catcher (a real SMTP server) the notification service sends to.
DEFAULT_SMTP_PORT = 1025
DEFAULT_START_TIMEOUT = 120.0
#: The local trace sink's OTLP/gRPC port (TENPO_STACK_TRACES=1), the Collector's usual one.
DEFAULT_OTLP_PORT = 4317
#: Route port of the first node of a NATS cluster (TENPO_STACK_NATS_CLUSTER=3); the others
#: take the next ports, as they do for the client and monitoring ports.
DEFAULT_NATS_CLUSTER_PORT = 6222
#: Replica n (from 0) of a service listens on its port + n × this (50052, 50152, ...).
REPLICA_PORT_STEP = 100
#: What the cluster shape may ask for on one machine.
MAX_REPLICAS = 4
NATS_CLUSTER_SIZES = (1, 3, 5)

#: gRPC port of each known service, as an offset from the port base (50050).
PORT_OFFSETS = {
    "gateway": 0,
    "catalog": 1,
    "inventory": 2,
    "customer": 3,
    "cart": 4,
    "order": 5,
    "notification": 6,
}
#: Services that are not in PORT_OFFSETS get ports from base + this offset on.
UNKNOWN_PORT_OFFSET = 10
#: Services without a database of their own.
WITHOUT_DATABASE = frozenset({"gateway"})

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """The environment asks for something impossible; the message says what."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    grpc_port: int
    http_port: int | None = None
    #: Processes of this service (TENPO_STACK_REPLICAS); the gateway is always one.
    replicas: int = 1

    def replica_port(self, replica: int) -> int:
        return self.grpc_port + replica * REPLICA_PORT_STEP

    def process_name(self, replica: int) -> str:
        """``inventory`` for the first replica (as with one), ``inventory-2`` and on after."""
        return self.name if replica == 0 else f"{self.name}-{replica + 1}"

    @property
    def target(self) -> str:
        """What its callers dial: one address, or every replica's for gRPC's round robin
        (the kit's channels balance over every address a target resolves to)."""
        ports = [self.replica_port(r) for r in range(self.replicas)]
        if len(ports) == 1:
            return f"127.0.0.1:{ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"

    @property
    def has_database(self) -> bool:
        return self.name not in WITHOUT_DATABASE

    @property
    def module(self) -> str:
        return f"services.{self.name}"


@dataclass(frozen=True)
class StackConfig:
    root_dir: Path
    data_dir: Path
    services: list[ServiceSpec]
    postgres_port: int = DEFAULT_POSTGRES_PORT
    nats_port: int = DEFAULT_NATS_PORT
    nats_monitor_port: int | None = DEFAULT_NATS_MONITOR_PORT
    smtp_port: int = DEFAULT_SMTP_PORT
    #: Set when TENPO_NATS_URL points at a NATS we do not run.
    external_nats_url: str | None = None
    #: Set when TENPO_POSTGRES_ADMIN_URL points at a PostgreSQL we do not run.
    external_postgres_admin_url: str | None = None
    #: ``<NAME>_DATABASE_URL`` values found in the environment, used as they are.
    database_urls: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = DEFAULT_START_TIMEOUT
    host: str = "127.0.0.1"
    #: Nodes of the embedded NATS (TENPO_STACK_NATS_CLUSTER): 1, or a JetStream cluster.
    nats_nodes: int = 1
    nats_cluster_port: int = DEFAULT_NATS_CLUSTER_PORT
    #: Start the local trace sink (TENPO_STACK_TRACES) unless an OTLP endpoint is set.
    traces: bool = False
    otlp_port: int = DEFAULT_OTLP_PORT

    def nats_node_dir(self, node: int) -> Path:
        """One node keeps ``nats/`` as before; a cluster's nodes ``nats/cluster-<n>/``."""
        return self.nats_dir if self.nats_nodes == 1 else self.nats_dir / f"cluster-{node + 1}"

    @staticmethod
    def nats_node_name(node: int) -> str:
        return "nats" if node == 0 else f"nats-{node + 1}"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def nats_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def traces_dir(self) -> Path:
        return self.data_dir / "traces"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "devstack.lock"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "dev-staff-token"

    def log_file(self, process: str) -> Path:
        return self.logs_dir / f"{process}.log"

    @property
    def needs_embedded_postgres(self) -> bool:
        """False when every database comes from the environment or an external server."""
        if self.external_postgres_admin_url:
            return False
        with_database = [s for s in self.services if s.has_database]
        return not with_database or any(s.name not in self.database_urls for s in with_database)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if environ is None else environ
        root_dir = find_root_dir()
        data_dir = Path(env.get("TENPO_DATA_DIR") or root_dir / ".data").absolute()
        names = select_services(discover_services(root_dir / "services"), env.get("TENPO_SERVICES"))
        replicas = _count(env, "TENPO_STACK_REPLICAS", range(1, MAX_REPLICAS + 1))
        services = assign_ports(names, env, replicas)
        nats_nodes = _count(env, "TENPO_STACK_NATS_CLUSTER", NATS_CLUSTER_SIZES)
        monitor_port: int | None = _int(env, "TENPO_NATS_MONITOR_PORT", DEFAULT_NATS_MONITOR_PORT)
        database_urls = {
            s.name: env[f"{s.env_prefix}DATABASE_URL"]
            for s in services
            if s.has_database and env.get(f"{s.env_prefix}DATABASE_URL")
        }
        return cls(
            root_dir=root_dir,
            data_dir=data_dir,
            services=services,
            postgres_port=_int(env, "TENPO_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
            nats_port=_int(env, "TENPO_NATS_PORT", DEFAULT_NATS_PORT),
            nats_monitor_port=monitor_port or None,
            smtp_port=_int(env, "TENPO_SMTP_PORT", DEFAULT_SMTP_PORT),
            external_nats_url=env.get("TENPO_NATS_URL") or None,
            external_postgres_admin_url=env.get("TENPO_POSTGRES_ADMIN_URL") or None,
            database_urls=database_urls,
            start_timeout=_seconds(env, "TENPO_START_TIMEOUT", DEFAULT_START_TIMEOUT),
            nats_nodes=nats_nodes,
            nats_cluster_port=_int(env, "TENPO_NATS_CLUSTER_PORT", DEFAULT_NATS_CLUSTER_PORT),
            traces=(env.get("TENPO_STACK_TRACES") or "").lower() in {"1", "true", "yes"}
            and not env.get("TENPO_OTEL_EXPORTER_OTLP_ENDPOINT"),
            otlp_port=_int(env, "TENPO_OTLP_PORT", DEFAULT_OTLP_PORT),
        )


def find_root_dir() -> Path:
    """The repository root: where the ``services`` package lives (an editable install puts it
    on sys.path), else the working directory."""
    # find_spec locates the package without importing it: the kit never imports a service.
    spec = importlib.util.find_spec("services")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).parent.absolute()
    return Path.cwd()


def discover_services(services_dir: Path) -> list[str]:
    """Every ``services/<name>/`` with a ``__main__.py``, in start order: the known services
    in dependency order, then unknown ones by name, the gateway last (it fronts the rest)."""
    if not services_dir.is_dir():
        return []
    found = {
        path.parent.name
        for path in services_dir.glob("*/__main__.py")
        if _SERVICE_NAME.fullmatch(path.parent.name)
    }
    known = [name for name in PORT_OFFSETS if name in found and name != "gateway"]
    unknown = sorted(found - PORT_OFFSETS.keys())
    return known + unknown + (["gateway"] if "gateway" in found else [])


def select_services(discovered: list[str], selection: str | None) -> list[str]:
    """Apply TENPO_SERVICES: unset or empty means all, ``none`` means none, else a comma list."""
    if selection is None or not selection.strip():
        return discovered
    if selection.strip().lower() == "none":
        return []
    wanted = [name.strip() for name in selection.split(",") if name.strip()]
    missing = [name for name in wanted if name not in discovered]
    if missing:
        raise ConfigError(
            f"TENPO_SERVICES names {', '.join(missing)}, but services/ only has "
            f"{', '.join(discovered) or 'no service'}"
        )
    return [name for name in discovered if name in wanted]


def assign_ports(names: list[str], env: Mapping[str, str], replicas: int = 1) -> list[ServiceSpec]:
    """Fixed ports from the port base (TENPO_PORT_BASE), each overridable with
    ``<NAME>_GRPC_PORT``; unknown services take the next free port from base + 10. With
    ``replicas``, replica n of each service (not the gateway) listens on port + 100 n."""
    base = _int(env, "TENPO_PORT_BASE", DEFAULT_PORT_BASE)
    ports: dict[str, int] = {}
    for name in names:
        explicit = env.get(f"{name.upper()}_GRPC_PORT")
        if explicit:
            ports[name] = _int(env, f"{name.upper()}_GRPC_PORT", 0)
        elif name in PORT_OFFSETS:
            ports[name] = base + PORT_OFFSETS[name]
    candidate = base + UNKNOWN_PORT_OFFSET
    for name in names:
        if name in ports:
            continue
        while candidate in ports.values() or port_in_use("127.0.0.1", candidate):
            candidate += 1
        ports[name] = candidate
        candidate += 1
    clashes = {port for port in ports.values() if list(ports.values()).count(port) > 1}
    if clashes:
        raise ConfigError(f"several services would listen on port(s) {sorted(clashes)}")
    return [
        ServiceSpec(
            name=name,
            grpc_port=ports[name],
            http_port=(
                _int(env, "GATEWAY_HTTP_PORT", DEFAULT_GATEWAY_HTTP_PORT)
                if name == "gateway"
                else None
            ),
            replicas=1 if name == "gateway" else replicas,
        )
        for name in names
    ]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, not {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be between 0 and 65535, not {value}")
    return value


def _count(env: Mapping[str, str], name: str, allowed: Sequence[int]) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) not in allowed:
        choices = ", ".join(str(n) for n in allowed)
        raise ConfigError(f"{name} must be one of {choices}, not {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {value}")
    return value
