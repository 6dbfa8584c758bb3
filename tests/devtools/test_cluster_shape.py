"""The cluster shape on one machine: `make run` with a three-node NATS JetStream cluster and
two replicas of a service. Under steady writes, the NATS node leading the stream, then one
service replica, then PostgreSQL are killed (SIGKILL); the runner starts each again.
Afterwards every write that succeeded happened exactly once, callers saw only successes and
UNAVAILABLE (retried with the same request_id, never INTERNAL), and every outbox row reached
the stream exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import grpc
import nats
import psutil
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from tenpo.devtools.stack.config import REPLICA_PORT_STEP
from tenpo.devtools.stack.net import port_in_use
from tenpo.devtools.stack.runner import READY_BANNER
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc, resources_pb2
from tenpo.kit.events import EVENT_ID_HEADER
from tests.stack import Runner, quiet_ports

pytestmark = pytest.mark.integration

INVENTORY_OFFSET = 2
#: Writes before the NATS node dies, before the replica dies, before PostgreSQL dies, in all.
WRITES_BEFORE_NODE_LOSS = 20
WRITES_BEFORE_REPLICA_LOSS = 50
WRITES_BEFORE_POSTGRES_LOSS = 80
WRITES = 120


def port_ranges(taken: set[int], *shapes: tuple[int, ...]) -> list[int]:
    """For each shape (offsets from a first port), a first port such that every port of
    every shape is free and no two shapes (nor ``taken``, chosen but not bound yet) share
    one."""
    taken = set(taken)
    firsts = []
    for offsets in shapes:
        while True:
            # Below the kernel's ephemeral range, in this worker's band (tests.stack): a
            # NATS route port taken as another worker's source port once kept the cluster
            # from forming.
            first = quiet_ports(max(offsets) + 1)
            wanted = {first + offset for offset in offsets}
            if (
                max(wanted) < 32_768
                and not wanted & taken
                and not any(port_in_use("127.0.0.1", port) for port in wanted)
            ):
                break
        taken |= wanted
        firsts.append(first)
    return firsts


def round_robin(ports: list[int]) -> grpc.Channel:
    """A client as the services build theirs: every replica's address, round robin; no
    automatic retry, so every UNAVAILABLE reaches the test and is counted."""
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    config = {"loadBalancingConfig": [{"round_robin": {}}]}
    return grpc.insecure_channel(target, options=[("grpc.service_config", json.dumps(config))])


class Writer(threading.Thread):
    """Adds one unit at a time, each with its own request_id, retried with the same id on
    UNAVAILABLE until it succeeds, as a client should."""

    def __init__(self, stub: inventory_service_pb2_grpc.InventoryServiceStub, token: str, sku: str,
                 location: str) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.stub, self.token, self.sku, self.location = stub, token, sku, location
        self.succeeded = 0
        self.codes: Counter[str] = Counter()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set() and self.succeeded < WRITES:
                self._write(uuid.uuid4().hex)
        except BaseException as error:
            self.error = error

    def _write(self, request_id: str) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.stub.AdjustStock(
                    api.AdjustStockRequest(
                        sku=self.sku,
                        location_id=self.location,
                        quantity=1,
                        reason=resources_pb2.MOVEMENT_REASON_RECEIPT,
                        request_id=request_id,
                    ),
                    metadata=[("authorization", f"Bearer {self.token}")],
                    timeout=10,
                )
            except grpc.RpcError as error:
                self.codes[error.code().name] += 1
                if error.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            self.codes["OK"] += 1
            self.succeeded += 1
            return

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.succeeded < count:
            if self.error is not None:
                raise self.error
            assert time.monotonic() < deadline, f"only {self.succeeded} writes succeeded"
            time.sleep(0.1)


def on_hand(stub: inventory_service_pb2_grpc.InventoryServiceStub, token: str,
            location: str, sku: str) -> int:  # fmt: skip
    """The SKU's stock here, read as a client reads: UNAVAILABLE (a replica whose pool still
    meets a database that has just restarted) is retried with backoff, for a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            levels = stub.ListStockLevels(
                api.ListStockLevelsRequest(location_id=location, page_size=1000),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=10,
            ).stock_levels
            break
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return sum(int(level.on_hand) for level in levels if level.sku == sku)


def replica_process(runner: Runner, port: int, service: str = "inventory") -> psutil.Process:
    for child in psutil.Process(runner.process.pid).children():
        try:
            if child.cmdline()[-2:] == ["-m", f"services.{service}"] and any(
                c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in child.net_connections("tcp")
            ):
                return child
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue  # a process killed a moment ago, not reaped yet
    raise AssertionError(f"no {service} replica listens on {port}:\n{runner.text}")


async def stream_leader(nats_urls: list[str], service: str = "inventory") -> int:
    """The cluster node (1-3) that leads a service's stream, which has three replicas."""
    client = await nats.connect(nats_urls)
    try:
        info = await client.jetstream().stream_info(f"TENPO_{service.upper()}")
    finally:
        await client.close()
    assert info.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader
    return int(info.cluster.leader.rsplit("-", 1)[1])


async def connect(data_dir: Path, postgres_port: int, service: str) -> asyncpg.Connection:
    """A connection to a service's own database in the stack, as the service itself."""
    secrets = json.loads((data_dir / "secrets.json").read_text())
    password = secrets["database_passwords"][service]
    return await asyncpg.connect(
        host="127.0.0.1", port=postgres_port, user=service, password=password, database=service
    )


async def outbox_and_stream(
    data_dir: Path, postgres_port: int, nats_urls: list[str], service: str = "inventory"
) -> tuple[set[str], list[str]]:
    """Every event id in a service's outbox once nothing waits, and every event id in its
    stream (a list: duplicates would show)."""
    connection = await connect(data_dir, postgres_port, service)
    try:
        deadline = time.monotonic() + 120
        while await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            assert time.monotonic() < deadline, "the outbox never emptied"
            await asyncio.sleep(0.5)
        outbox = {str(row["id"]) for row in await connection.fetch("SELECT id FROM outbox")}
    finally:
        await connection.close()
    client = await nats.connect(nats_urls)
    try:
        js = client.jetstream()
        stream = f"TENPO_{service.upper()}"
        total = (await js.stream_info(stream)).state.messages
        pull = await js.pull_subscribe(
            f"tenpo.{service}.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        ids: list[str] = []
        while len(ids) < total:
            for message in await pull.fetch(500, timeout=10):
                ids.append((message.headers or {})[EVENT_ID_HEADER])
                await message.ack()
    finally:
        await client.close()
    return outbox, ids


@pytest.mark.timeout(900)
def test_a_nats_node_and_a_replica_die_under_writes_and_nothing_is_lost(
    runner_env: dict[str, str],
) -> None:
    data_dir = Path(runner_env["TENPO_DATA_DIR"])
    nodes = (0, 1, 2)
    chosen = {int(runner_env[key]) for key in ("TENPO_POSTGRES_PORT", "TENPO_SMTP_PORT")}
    base, nats_port, cluster_port, monitor_port = port_ranges(
        chosen, (0, INVENTORY_OFFSET, INVENTORY_OFFSET + REPLICA_PORT_STEP), nodes, nodes, nodes
    )
    env = runner_env | {
        "TENPO_SERVICES": "inventory",
        # No catalog in this stack to announce SKUs: inventory takes any.
        "INVENTORY_REQUIRE_KNOWN_SKUS": "false",
        "TENPO_PORT_BASE": str(base),
        "TENPO_STACK_REPLICAS": "2",
        "TENPO_STACK_NATS_CLUSTER": "3",
        "TENPO_NATS_PORT": str(nats_port),
        "TENPO_NATS_CLUSTER_PORT": str(cluster_port),
        "TENPO_NATS_MONITOR_PORT": str(monitor_port),
    }
    nats_urls = [f"nats://127.0.0.1:{nats_port + node}" for node in range(3)]
    runner = Runner("run", env)
    runner.wait_for(READY_BANNER, timeout=400)
    assert "nats cluster (3 nodes)" in runner.text
    ports = [base + INVENTORY_OFFSET, base + INVENTORY_OFFSET + REPLICA_PORT_STEP]
    assert "inventory-2" in runner.text
    token = (data_dir / "dev-staff-token").read_text().strip()
    channel = round_robin(ports)
    stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)
    writer: Writer | None = None
    try:
        locations = stub.ListLocations(
            api.ListLocationsRequest(page_size=50),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        ).locations
        location = locations[0].id
        sku = "CLUSTER-1"
        before = on_hand(stub, token, location, sku)

        writer = Writer(stub, token, sku, location)
        writer.start()
        writer.wait_for(WRITES_BEFORE_NODE_LOSS, timeout=120)
        # The node that leads the service's stream: the hardest one to lose.
        leader = asyncio.run(stream_leader(nats_urls))
        node = int((data_dir / "nats" / f"cluster-{leader}" / "nats-server.pid").read_text())
        os.kill(node, signal.SIGKILL)
        name = "nats" if leader == 1 else f"nats-{leader}"
        runner.wait_for(f"{name} stopped; restarting it in", timeout=60)

        writer.wait_for(WRITES_BEFORE_REPLICA_LOSS, timeout=180)
        replica_process(runner, ports[1]).kill()
        runner.wait_for("inventory-2 was killed by SIGKILL; restarting it in", timeout=60)

        writer.wait_for(WRITES_BEFORE_POSTGRES_LOSS, timeout=300)
        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        runner.wait_for("postgres stopped; restarting it in", timeout=60)

        writer.wait_for(WRITES, timeout=400)
        writer.join(timeout=60)
        after = on_hand(stub, token, location, sku)
        outbox, stream = asyncio.run(
            outbox_and_stream(data_dir, int(env["TENPO_POSTGRES_PORT"]), nats_urls)
        )
    finally:
        if writer is not None:
            writer.stop.set()
        channel.close()
        runner.process.send_signal(signal.SIGINT)
    print(
        f"\ncluster shape: {writer.succeeded} writes, answers {dict(writer.codes)}; "
        f"on hand {before} -> {after}; outbox {len(outbox)} events, stream {len(stream)} "
        f"({len(set(stream))} distinct)"
    )
    assert writer.error is None, writer.error
    # Each write that succeeded happened once, however often it was retried.
    assert after - before == WRITES
    # Callers saw successes and UNAVAILABLE (retried), never INTERNAL or UNKNOWN.
    assert set(writer.codes) <= {"OK", "UNAVAILABLE"}, writer.codes
    # No event lost, none published twice.
    assert len(stream) == len(set(stream))
    assert set(stream) == outbox
    assert len(outbox) >= WRITES
    assert runner.finish(timeout=120) == 0, runner.text
