"""Test fixtures: real PostgreSQL and NATS, once per session; a fresh database per test.

`make test` runs the suite in several processes (pytest-xdist); each worker is a session of
its own, so it starts its own PostgreSQL and NATS (own data directory, free ports) and
nothing is shared between workers but an external server named in the environment, where
the unique database, stream and consumer names keep tests apart."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tenpo.devtools.stack import (
    EmbeddedNats,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    free_port,
)
from tenpo.devtools.stack.postgres import run_admin_sql

#: Fixtures for whole-stack tests (the dev-stack runner in a subprocess).
pytest_plugins = ["tests.stack"]

INTEGRATION_FIXTURES = frozenset({"postgres_admin_url", "database_url", "nats_url", "nats_factory"})
POSTGRES_IMAGE = "postgres:18-alpine"
#: Durability costs time and buys nothing in a throw-away test cluster.
FAST_POSTGRES_ARGS = (
    "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
)

#: Directories whose tests share one whole stack per session.
SHARED_STACK_DIRECTORIES = tuple(
    Path(__file__).parent / name for name in ("touchpoints", "journeys")
)
#: Modules with one whole stack of their own that runs for minutes (the cluster shape: three
#: NATS nodes, two replicas of every service): each in a worker of its own, handed out first.
LONG_STACK_MODULES = (Path(__file__).parent / "devtools" / "test_cluster_shape.py",)
#: Modules that take a minute or more on their own (whole stacks started and stopped, the
#: thousand checkouts, the OpenAPI fuzzing, a killed order process): handed out right after
#: the groups, so that no worker is left running one of them at the end while the others idle.
LONG_MODULES = tuple(
    Path(__file__).parent / name
    for name in (
        "test_system.py",
        "devtools/test_supervisor.py",
        "services/gateway/test_openapi.py",
        "services/order/test_concurrency.py",
        "services/order/test_process_kill.py",
    )
)

NatsFactory = Callable[[], EmbeddedNats]
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test that needs a server, so ``-m "not integration"``
    (``make test-unit``) runs without any."""
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        # The tests of a directory that shares one whole stack per session run in one worker
        # (`--dist loadgroup`): spread over several, each worker would start its own stack.
        for directory in SHARED_STACK_DIRECTORIES:
            if directory in item.path.parents:
                item.add_marker(pytest.mark.xdist_group(directory.name))
        if item.path in LONG_STACK_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    # Those groups are the longest units of work: handed out first (the longest of all before
    # them), they run beside the many short tests instead of after them.
    items.sort(key=_hand_out_order)


def _hand_out_order(item: pytest.Item) -> int:
    if item.path in LONG_STACK_MODULES:
        return 0
    if any(d in item.path.parents for d in SHARED_STACK_DIRECTORIES):
        return 1
    return 2 if item.path in LONG_MODULES else 3


def worker_name() -> str:
    """The pytest-xdist worker running this process (``gw0``, ...), or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private directory under the system temp dir, removed afterwards; its name tells
    which worker made it (for a look at what a crashed run left behind).

    Not pytest's tmp_path: its root is 0700 and the embedded PostgreSQL, which runs as
    another user when the tests run as root, could not reach a data directory in it."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{worker_name()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        # No daemon, no socket, no permission: all mean "use the embedded server".
        return False


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Superuser URL (plain ``postgresql://``) of the session's PostgreSQL server: the one
    ``TENPO_TEST_POSTGRES_ADMIN_URL`` names, else a container when a Docker daemon answers,
    else an embedded server with fsync off on a free port."""
    external = os.environ.get("TENPO_TEST_POSTGRES_ADMIN_URL")
    if external:
        yield external
        return
    if _docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community split
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(POSTGRES_IMAGE, driver=None).with_command(FAST_POSTGRES_ARGS)
        with container:
            yield str(container.get_connection_url())
        return
    with scratch_dir("tenpo-test-pg-") as root:
        server = EmbeddedPostgres(root / "data", free_port(), durable=False)
        server.start()
        try:
            yield server.admin_url()
        finally:
            server.stop()


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database, owned by its own non-superuser role, with pg_trgm installed, as a
    ``postgresql+asyncpg://`` URL; dropped (with its role) after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    password = secrets.token_urlsafe(18)
    url = _patiently(
        postgres_admin_url, lambda: ensure_database(postgres_admin_url, name, password)
    )
    try:
        yield url
    finally:
        _patiently(postgres_admin_url, lambda: drop_database(postgres_admin_url, name))


#: What the server is doing, printed when an administrative script has not finished in time.
_ACTIVITY = """
SELECT a.pid, a.datname, a.state, a.wait_event_type, a.wait_event,
       now() - a.query_start AS running_for, left(a.query, 100) AS query,
       (SELECT string_agg(l.locktype || ' ' || l.mode, ', ')
          FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) AS waiting_for
  FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
"""


def _patiently(admin_url: str, step: Callable[[], T]) -> T:
    """Run an idempotent administrative step; if it does not finish within its timeout (a
    CI machine under load once took more than 60 s for CREATE DATABASE), print what the
    server was doing and try once more."""
    try:
        return step()
    except subprocess.TimeoutExpired:
        try:
            activity = run_admin_sql(admin_url, _ACTIVITY, timeout=20)
        except Exception as error:  # diagnostics must not hide the retry
            activity = f"(no activity: {error!r})"
        print(f"administrative SQL timed out; server activity:\n{activity}", file=sys.stderr)
        return step()


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """URL of the session's NATS server with JetStream: ``TENPO_TEST_NATS_URL``, else an
    embedded one. Tests share it: use unique stream and subject names."""
    external = os.environ.get("TENPO_TEST_NATS_URL")
    if external:
        yield external
        return
    with scratch_dir("tenpo-test-nats-") as root, EmbeddedNats(root, free_port()) as server:
        yield server.url


@pytest.fixture
def nats_factory() -> Iterator[NatsFactory]:
    """Starts private NATS servers (own store and port) that a test may stop and start
    again, e.g. to simulate a broker outage; all are stopped at teardown."""
    servers: list[EmbeddedNats] = []
    with contextlib.ExitStack() as cleanup:

        def start() -> EmbeddedNats:
            root = cleanup.enter_context(scratch_dir("tenpo-test-nats-"))
            # Started again on the same port by outage tests: a port below the ephemeral
            # range, which no outgoing connection can take while the server is down.
            from tests.stack import quiet_ports

            server = EmbeddedNats(root, quiet_ports())
            servers.append(server)
            server.start()
            return server

        try:
            yield start
        finally:
            for server in servers:
                server.stop()
