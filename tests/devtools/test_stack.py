"""Tests of the devstack: embedded PostgreSQL and NATS, the runner, and the test fixtures."""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import jwt
import nats
import pytest

from tenpo.devtools.stack import EmbeddedPostgres, PostgresError, free_port, libpq_url
from tenpo.devtools.stack.config import (
    ConfigError,
    ServiceSpec,
    StackConfig,
    assign_ports,
    discover_services,
    select_services,
)
from tenpo.devtools.stack.net import port_in_use
from tenpo.devtools.stack.postgres import PASSWORD_FILE
from tenpo.devtools.stack.runner import (
    PARALLEL_MIGRATIONS,
    READY_BANNER,
    DevStack,
    StackError,
    telemetry_hint,
)
from tests.conftest import NatsFactory, scratch_dir
from tests.stack import Runner, processes_using

ROOT = Path(__file__).resolve().parents[2]


# -- embedded PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    with scratch_dir("tenpo-test-pg-") as root:
        yield root / "data"


@pytest.mark.integration
async def test_postgres_data_survives_a_restart(pg_dir: Path) -> None:
    server = EmbeddedPostgres(pg_dir, free_port(), durable=False)
    try:
        assert server.start() is True
        url = server.ensure_database("shop", "first-pass'word")
        assert url.startswith("postgresql+asyncpg://shop:")
        connection = await asyncpg.connect(libpq_url(url))
        try:
            assert await connection.fetchval("SELECT current_user") == "shop"
            assert (
                await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = 'shop'")
                is False
            )
            # What a service migration does, as the non-superuser owner of its database.
            await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            await connection.execute("CREATE TABLE products (name text NOT NULL)")
            await connection.execute("INSERT INTO products VALUES ('東京タワー 限定Tシャツ')")
            similarity = await connection.fetchval(
                "SELECT similarity(name, '東京タワー') FROM products"
            )
            assert similarity > 0.2, "Japanese text must produce trigrams"
        finally:
            await connection.close()

        # A second manager on the same directory and port reuses the running server...
        assert EmbeddedPostgres(pg_dir, server.port).start() is False
        # ...and one asking for another port is refused rather than starting a second one.
        with pytest.raises(PostgresError, match="already runs"):
            EmbeddedPostgres(pg_dir, free_port()).start()

        server.stop()
        assert not server.is_running()
        assert server.start() is True
        # Idempotent, and the password may change (it is re-set every time).
        url = server.ensure_database("shop", "second-password")
        connection = await asyncpg.connect(libpq_url(url))
        try:
            assert (
                await connection.fetchval("SELECT name FROM products") == "東京タワー 限定Tシャツ"
            )
        finally:
            await connection.close()
    finally:
        server.stop()
    assert not server.is_running()


@pytest.mark.integration
def test_postgres_refuses_a_port_taken_by_something_else(pg_dir: Path) -> None:
    with EmbeddedPostgres(pg_dir, free_port(), durable=False) as first:
        other = EmbeddedPostgres(pg_dir.parent / "other", first.port, durable=False)
        with pytest.raises(PostgresError, match="already used"):
            other.start()
        assert not (pg_dir.parent / "other").exists()


# -- embedded NATS ----------------------------------------------------------------------------


async def test_nats_keeps_streams_and_messages_across_a_restart(nats_factory: NatsFactory) -> None:
    server = nats_factory()
    client = await nats.connect(server.url)
    stream = client.jetstream()
    await stream.add_stream(name="DEVSTACK", subjects=["devstack.>"])
    ack = await stream.publish(
        "devstack.saved", b"before the outage", headers={"Nats-Msg-Id": "m1"}
    )
    await client.close()

    server.stop()
    assert not server.is_running()
    assert not port_in_use(server.host, server.port)

    server.start()
    client = await nats.connect(server.url)
    try:
        stream = client.jetstream()
        message = await stream.get_msg("DEVSTACK", ack.seq)
        assert message.data == b"before the outage"
        after = await stream.publish("devstack.saved", b"after the outage")
        assert after.seq == ack.seq + 1
    finally:
        await client.close()


# -- the fixtures -----------------------------------------------------------------------------


async def test_database_url_gives_a_private_database_with_pg_trgm(database_url: str) -> None:
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        database, user = await connection.fetchrow("SELECT current_database(), current_user")
        assert database == user
        assert (
            await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", user)
            is False
        )
        assert (
            await connection.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")
            == 1
        )
        await connection.execute("CREATE TABLE mine (id int)")
    finally:
        await connection.close()


async def test_nats_url_has_jetstream(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().account_info()
        assert info.limits is not None
    finally:
        await client.close()


# -- configuration ----------------------------------------------------------------------------


def test_services_are_discovered_in_start_order(tmp_path: Path) -> None:
    for name in ("gateway", "order", "catalog", "loyalty", "_private", "no_main"):
        (tmp_path / name).mkdir()
        if name != "no_main":
            (tmp_path / name / "__main__.py").touch()
    assert discover_services(tmp_path) == ["catalog", "order", "loyalty", "gateway"]
    assert discover_services(tmp_path / "missing") == []


def test_service_selection() -> None:
    discovered = ["catalog", "cart", "gateway"]
    assert select_services(discovered, None) == discovered
    assert select_services(discovered, "none") == []
    assert select_services(discovered, "gateway, catalog") == ["catalog", "gateway"]
    with pytest.raises(ConfigError, match="payments"):
        select_services(discovered, "payments")


def test_ports_are_fixed_and_overridable() -> None:
    specs = assign_ports(["catalog", "loyalty", "gateway"], {})
    ports = {spec.name: (spec.grpc_port, spec.http_port) for spec in specs}
    assert ports["catalog"] == (50051, None)
    assert ports["gateway"] == (50050, 8080)
    assert ports["loyalty"][0] >= 50060

    env = {"TENPO_PORT_BASE": "7000", "CATALOG_GRPC_PORT": "6001", "GATEWAY_HTTP_PORT": "9090"}
    ports = {s.name: (s.grpc_port, s.http_port) for s in assign_ports(["catalog", "gateway"], env)}
    assert ports == {"catalog": (6001, None), "gateway": (7000, 9090)}
    with pytest.raises(ConfigError, match="port"):
        assign_ports(["catalog", "cart"], {"CART_GRPC_PORT": "50051"})


def test_the_cluster_shape_is_asked_for_by_environment() -> None:
    light = StackConfig.from_env({"TENPO_SERVICES": "inventory,gateway"})
    assert light.nats_nodes == 1
    assert [s.replicas for s in light.services] == [1, 1]
    assert light.nats_node_dir(0) == light.nats_dir  # one node keeps the old store

    env = {
        "TENPO_SERVICES": "inventory,gateway",
        "TENPO_STACK_REPLICAS": "2",
        "TENPO_STACK_NATS_CLUSTER": "3",
    }
    config = StackConfig.from_env(env)
    inventory, gateway = config.services
    assert config.nats_nodes == 3
    assert [config.nats_node_name(n) for n in range(3)] == ["nats", "nats-2", "nats-3"]
    assert len({config.nats_node_dir(n) for n in range(3)}) == 3
    assert (inventory.replicas, gateway.replicas) == (2, 1)  # one entry point
    assert [inventory.process_name(r) for r in range(2)] == ["inventory", "inventory-2"]
    assert [inventory.replica_port(r) for r in range(2)] == [50052, 50152]
    assert inventory.target == "ipv4:127.0.0.1:50052,127.0.0.1:50152"
    assert gateway.target == "127.0.0.1:50050"

    stack = DevStack(config, io.StringIO())
    assert stack.nats_url == "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
    first, second = stack.service_env(inventory, 0), stack.service_env(inventory, 1)
    assert (first["INVENTORY_GRPC_PORT"], second["INVENTORY_GRPC_PORT"]) == ("50052", "50152")
    assert first["TENPO_INVENTORY_TARGET"] == inventory.target
    assert first["TENPO_NATS_URL"] == stack.nats_url
    assert first["TENPO_NATS_STREAM_REPLICAS"] == "3"
    # The runner migrated every database before starting any replica: none migrates again.
    assert (first["INVENTORY_MIGRATE_ON_START"], second["INVENTORY_MIGRATE_ON_START"]) == (
        "false",
        "false",
    )
    single = DevStack(light, io.StringIO()).service_env(light.services[0])
    # One node: the stack leaves stream replicas alone (one, the default).
    assert single.get("TENPO_NATS_STREAM_REPLICAS") == os.environ.get("TENPO_NATS_STREAM_REPLICAS")


def test_run_says_where_telemetry_goes_or_how_to_send_it() -> None:
    assert "TENPO_OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317" in telemetry_hint({})
    sent = telemetry_hint({"TENPO_OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert sent == "Telemetry: traces and metrics go to http://collector:4317 (OTLP/gRPC)."
    assert "printed" in telemetry_hint({"TENPO_OTEL_CONSOLE": "true"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TENPO_STACK_REPLICAS", "0"),
        ("TENPO_STACK_REPLICAS", "9"),
        ("TENPO_STACK_REPLICAS", "two"),
        ("TENPO_STACK_NATS_CLUSTER", "2"),  # JetStream needs a majority: 1, 3 or 5
    ],
)
def test_an_impossible_cluster_shape_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        StackConfig.from_env({name: value})


def test_migrations_run_side_by_side_and_a_failure_is_reported_after_the_others_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = StackConfig.from_env({"TENPO_SERVICES": "catalog,inventory,customer,cart"})
    out = io.StringIO()
    stack = DevStack(config, out)
    first = {spec.name for spec in config.services[:PARALLEL_MIGRATIONS]}
    gate = threading.Barrier(len(first), timeout=10)  # all at once, or this waits and fails
    ran: list[str] = []

    def command(spec: ServiceSpec, command: str) -> None:
        if spec.name in first:
            gate.wait()
        ran.append(spec.name)
        if spec.name == "inventory":
            raise StackError("inventory's migration failed")

    monkeypatch.setattr(stack, "_service_command", command)
    with pytest.raises(StackError, match="inventory"):
        stack.migrate_all(config.services)
    assert sorted(ran) == ["cart", "catalog", "customer", "inventory"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert [line.split()[1] for line in lines if "failed" in line] == ["inventory"]


def test_each_database_is_migrated_and_seeded_by_one_process_the_order_seed_after_customer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = StackConfig.from_env({"TENPO_SERVICES": "catalog,inventory,customer,cart,order"})
    out = io.StringIO()
    stack = DevStack(config, out)
    lock = threading.Lock()
    events: list[tuple[str, str, str]] = []
    customer_running = threading.Event()
    others = threading.Barrier(2, timeout=10)  # a seed beside the customer's, or this fails

    def command(spec: ServiceSpec, command: str) -> None:
        with lock:
            events.append(("start", spec.name, command))
        if spec.name == "customer":
            customer_running.set()
            others.wait()
        elif spec.name == "catalog":
            customer_running.wait(10)
            others.wait()
        with lock:
            events.append(("end", spec.name, command))

    monkeypatch.setattr(stack, "_service_command", command)
    stack.migrate_and_seed_all(config.services)
    assert sorted(name for kind, name, _ in events if kind == "start") == sorted(
        spec.name for spec in config.services
    )
    assert {command for *_, command in events} == {"seed"}  # it migrates first: one process
    assert events.index(("start", "order", "seed")) > events.index(("end", "customer", "seed"))
    assert len(out.getvalue().splitlines()) == len(config.services)


def test_a_seed_whose_predecessor_failed_is_skipped_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = StackConfig.from_env({"TENPO_SERVICES": "customer,order"})
    out = io.StringIO()
    stack = DevStack(config, out)
    ran: list[str] = []

    def command(spec: ServiceSpec, command: str) -> None:
        ran.append(spec.name)
        raise StackError(f"{spec.name}'s seed failed")

    monkeypatch.setattr(stack, "_service_command", command)
    with pytest.raises(StackError, match="customer's seed failed"):
        stack.migrate_and_seed_all(config.services)
    assert ran == ["customer"]
    failed = [line.split()[1] for line in out.getvalue().splitlines() if "failed" in line]
    assert sorted(failed) == ["customer", "order"]


# -- the runner -------------------------------------------------------------------------------


@pytest.mark.integration
def test_run_starts_the_servers_and_ctrl_c_stops_them(runner_env: dict[str, str]) -> None:
    data_dir = Path(runner_env["TENPO_DATA_DIR"])
    first = Runner("run", runner_env)
    first.wait_for(READY_BANNER, timeout=60)
    assert f"127.0.0.1:{runner_env['TENPO_POSTGRES_PORT']}" in first.text
    assert f"nats://127.0.0.1:{runner_env['TENPO_NATS_PORT']}" in first.text
    token = (data_dir / "dev-staff-token").read_text().strip()
    assert token in first.text
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kind"] == "staff"
    assert "orders:write" in claims["scope"].split()

    second = Runner("run", runner_env)
    assert second.finish(timeout=30) != 0
    assert "already running" in second.text

    first.process.send_signal(signal.SIGINT)
    assert first.finish(timeout=60) == 0, first.text
    assert "stop postgres" in first.text
    assert processes_using(data_dir) == []

    # A later run finds the same cluster and keys again.
    password = (data_dir / "postgres" / PASSWORD_FILE).read_text()
    kid = jwt.get_unverified_header(token)["kid"]
    again = Runner("run", runner_env)
    again.wait_for(READY_BANNER, timeout=60)
    again.process.send_signal(signal.SIGTERM)
    assert again.finish(timeout=60) == 0, again.text
    assert (data_dir / "postgres" / PASSWORD_FILE).read_text() == password
    new_token = (data_dir / "dev-staff-token").read_text().strip()
    assert jwt.get_unverified_header(new_token)["kid"] == kid


def test_migrate_without_services_has_nothing_to_do(runner_env: dict[str, str]) -> None:
    runner = Runner("migrate", runner_env)
    assert runner.finish(timeout=30) == 0
    assert "nothing to migrate" in runner.text


@pytest.mark.integration
def test_a_stack_whose_starter_dies_stops_on_its_own(runner_env: dict[str, str]) -> None:
    """With TENPO_STACK_EXIT_WITH_PARENT (as the tests start stacks), a runner whose parent
    is killed stops everything: a crashed test worker leaves no stack holding its ports."""
    import subprocess
    import sys
    import time

    data_dir = Path(runner_env["TENPO_DATA_DIR"])
    starter = subprocess.Popen(  # the parent: starts the runner, then waits to be killed
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-m', 'tenpo.devtools.stack', 'run'])\n"
            "time.sleep(3600)\n",
        ],
        env={**runner_env, "TENPO_STACK_EXIT_WITH_PARENT": "1"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not port_in_use("127.0.0.1", int(runner_env["TENPO_NATS_PORT"])):
            assert time.monotonic() < deadline, "the stack never started"
            assert starter.poll() is None
            time.sleep(0.2)
        assert processes_using(data_dir), "nothing runs on the data directory"
    finally:
        starter.kill()
        starter.wait()
    deadline = time.monotonic() + 120
    while processes_using(data_dir):
        assert time.monotonic() < deadline, f"left running: {processes_using(data_dir)}"
        time.sleep(0.5)
