"""The cluster shape on one machine, whole system: `make run` with a three-node NATS
JetStream cluster and two replicas of every service behind the gateway. Guest shoppers check
out through the gateway's gRPC ingress, competing for a SKU with limited stock, while the
NATS node leading the order stream, then one replica of every service, then PostgreSQL are
SIGKILLed; the runner starts each again.

Afterwards, printed and asserted: every order placed took exactly one unit that inventory
committed (no oversell), no reservation is left held for an order that did not go through,
every order's OrderPlaced is on the stream exactly once and consumed by the customer and
notification services, every outbox row of every service reached its stream exactly once,
and the shoppers saw only successes, UNAVAILABLE or deadlines (retried with the same
request_id) and the refusal INSUFFICIENT_STOCK once the SKU sold out — never INTERNAL or
UNKNOWN."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
import psutil
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.stack.config import PORT_OFFSETS, REPLICA_PORT_STEP
from tenpo.devtools.stack.net import port_in_use
from tenpo.devtools.stack.runner import READY_BANNER
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.kit.events import EVENT_ID_HEADER
from tenpo.order.v1 import events_pb2 as order_events
from tests.devtools.cluster_shoppers import STORE, WEB_KEY, Shopper
from tests.stack import Runner, quiet_ports

pytestmark = pytest.mark.integration

SERVICES = ("catalog", "inventory", "customer", "cart", "order", "notification")
SHOPPERS = 3
#: Units of the contested SKU, all at the pickup store (none anywhere else).
STOCK = 24
#: Orders placed before the NATS node dies, before the replicas die, before PostgreSQL dies;
#: afterwards the shoppers go on until the SKU is sold out.
ORDERS_BEFORE_NODE_LOSS = 3
ORDERS_BEFORE_REPLICA_LOSS = 8
ORDERS_BEFORE_POSTGRES_LOSS = 13
#: Answers a shopper may see (code, or code and reason): successes, the retried ones with
#: any reason, the sold-out refusal.
EXPECTED_CODES = ("OK", "UNAVAILABLE", "DEADLINE_EXCEEDED")
EXPECTED_REFUSALS = ("FAILED_PRECONDITION INSUFFICIENT_STOCK", "ABORTED CHECKOUT_IN_PROGRESS")
#: Order and reservation states (tenpo.order.v1.OrderStatus, inventory's reservations.state).
PENDING, CONFIRMED, PLACED, FAILED = 1, 2, 3, 5
STATUS_NAMES = {PENDING: "PENDING", CONFIRMED: "CONFIRMED", PLACED: "PLACED", FAILED: "FAILED"}
RESERVATION_ACTIVE, RESERVATION_COMMITTED = 1, 2
ORDER_PLACED = "tenpo.order.v1.OrderPlaced"


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


def retried(call: Any, *, retry: frozenset[grpc.StatusCode], timeout: float = 300) -> Any:
    """A set-up call, retried while it answers one of ``retry`` (a projection still catching
    up with the seed's events, a service still warming up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() not in retry or time.monotonic() > deadline:
                raise
            time.sleep(1)


def contested_sku(ingress: grpc.Channel) -> str:
    """The first variant of the first product the web shop lists."""
    stub = catalog_service_pb2_grpc.CatalogServiceStub(ingress)
    listed = retried(
        lambda: stub.ListProducts(
            catalog_api.ListProductsRequest(page_size=20),
            metadata=(("x-api-key", WEB_KEY),),
            timeout=30,
        ),
        retry=frozenset({grpc.StatusCode.UNAVAILABLE}),
    )
    return next(p.variants[0].sku for p in listed.products if p.variants)


def limit_stock(inventory: grpc.Channel, token: str, sku: str) -> None:
    """STOCK units of ``sku`` at the pickup store and none anywhere else, once inventory has
    stocked it for the demo (its projection of the catalog may still be catching up)."""
    stub = inventory_service_pb2_grpc.InventoryServiceStub(inventory)
    auth = (("authorization", f"Bearer {token}"),)
    deadline = time.monotonic() + 300
    while not any(
        level.sku == sku
        for level in stub.ListStockLevels(
            inventory_api.ListStockLevelsRequest(location_id=STORE, page_size=1000),
            metadata=auth,
            timeout=30,
        ).stock_levels
    ):
        assert time.monotonic() < deadline, f"inventory never heard of {sku}"
        time.sleep(1)
    locations = stub.ListLocations(
        inventory_api.ListLocationsRequest(page_size=100), metadata=auth, timeout=30
    ).locations
    for location in locations:
        stub.SetStockLevel(
            inventory_api.SetStockLevelRequest(
                sku=sku,
                location_id=location.id,
                on_hand=STOCK if location.id == STORE else 0,
                safety_stock=0,
                note="cluster-shape test",
                request_id=uuid.uuid4().hex,
            ),
            metadata=auth,
            timeout=30,
        )


def wait_for_orders(shoppers: list[Shopper], placed: list[str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(placed) < count:
        for shopper in shoppers:
            if shopper.error is not None:
                raise AssertionError(f"{shopper.name} saw {dict(shopper.answers)}") from (
                    shopper.error
                )
        assert any(s.is_alive() for s in shoppers), f"shoppers stopped at {len(placed)} orders"
        assert time.monotonic() < deadline, f"only {len(placed)} orders in {timeout} s"
        time.sleep(0.2)


def wait_for_lines(runner: Runner, texts: list[str], timeout: float) -> None:
    """Until the runner printed every one of ``texts``, in any order."""
    for text in texts:
        if text not in runner.text:
            runner.wait_for(text, timeout=timeout)


async def settled(data_dir: Path, postgres_port: int, sku: str) -> dict[str, Any]:
    """The test's orders by status, the units inventory committed to them, the reservations
    still held for orders that did not go through, and the stock of ``sku`` at the store."""
    order = await connect(data_dir, postgres_port, "order")
    inventory = await connect(data_dir, postgres_port, "inventory")
    try:
        statuses = {
            f"orders/{row['id']}": row["status"]
            for row in await order.fetch(
                "SELECT id, status FROM orders WHERE contact_email LIKE 'failover-%'"
            )
        }
        reservations = await inventory.fetch(
            "SELECT r.owner, r.state, l.quantity FROM reservations r "
            "JOIN reservation_lines l ON l.reservation_id = r.id WHERE l.sku = $1",
            sku,
        )
        level = await inventory.fetchrow(
            "SELECT on_hand, reserved FROM stock_levels WHERE sku = $1 AND location_id = $2",
            sku,
            STORE,
        )
        ledger = await inventory.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM movements WHERE sku = $1 AND location_id = $2",
            sku,
            STORE,
        )
        elsewhere = await inventory.fetchval(
            "SELECT coalesce(sum(on_hand), 0) FROM stock_levels WHERE sku = $1 "
            "AND location_id <> $2",
            sku,
            STORE,
        )
    finally:
        await order.close()
        await inventory.close()
    active = [r for r in reservations if r["state"] == RESERVATION_ACTIVE]
    return {
        "orders": Counter(statuses.values()),
        "placed": {owner.removeprefix("orders/") for owner, s in statuses.items() if s == PLACED},
        "committed": sum(
            r["quantity"]
            for r in reservations
            if r["state"] == RESERVATION_COMMITTED and r["owner"] in statuses
        ),
        "stranded": [
            r["owner"] for r in active if statuses.get(r["owner"]) not in (PENDING, CONFIRMED)
        ],
        "held": sum(r["quantity"] for r in active),
        "on_hand": level["on_hand"],
        "reserved": level["reserved"],
        "ledger": int(ledger),
        "elsewhere": int(elsewhere),
    }


async def settle(data_dir: Path, postgres_port: int, sku: str, timeout: float) -> dict[str, Any]:
    """Polls until every saga has finished and nothing is held for a finished order."""
    deadline = time.monotonic() + timeout
    while True:
        state = await settled(data_dir, postgres_port, sku)
        running = state["orders"][PENDING] + state["orders"][CONFIRMED]
        if (not running and not state["stranded"]) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(1)


async def order_placed_events(data_dir: Path, postgres_port: int) -> dict[str, str]:
    """Order id -> event id of every OrderPlaced in the order service's outbox."""
    connection = await connect(data_dir, postgres_port, "order")
    try:
        rows = await connection.fetch(
            "SELECT id, payload FROM outbox WHERE event_type = $1", ORDER_PLACED
        )
    finally:
        await connection.close()
    return {order_events.OrderPlaced.FromString(r["payload"]).order_id: str(r["id"]) for r in rows}


async def unconsumed(
    data_dir: Path, postgres_port: int, events: set[str], timeout: float
) -> dict[str, set[str]]:
    """Of ``events``, those the customer or the notification service has not consumed (its
    inbox), after waiting up to ``timeout`` for them to catch up."""
    deadline = time.monotonic() + timeout
    while True:
        missing: dict[str, set[str]] = {}
        for service in ("customer", "notification"):
            connection = await connect(data_dir, postgres_port, service)
            try:
                rows = await connection.fetch("SELECT event_id FROM inbox")
            finally:
                await connection.close()
            left = events - {str(row["event_id"]) for row in rows}
            if left:
                missing[service] = left
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(1)


def cluster_env(runner_env: dict[str, str]) -> tuple[dict[str, str], int, int]:
    """The whole stack in the cluster shape on ports of this worker: (environment, port
    base, first NATS client port)."""
    nodes = (0, 1, 2)
    offsets = tuple(
        offset + step for offset in PORT_OFFSETS.values() for step in (0, REPLICA_PORT_STEP)
    )
    chosen = {int(runner_env[key]) for key in ("TENPO_POSTGRES_PORT", "TENPO_SMTP_PORT")}
    base, nats_port, cluster_port, monitor_port = port_ranges(chosen, offsets, nodes, nodes, nodes)
    env = runner_env | {
        "TENPO_PORT_BASE": str(base),
        "GATEWAY_HTTP_PORT": str(quiet_ports()),
        "TENPO_STACK_REPLICAS": "2",
        "TENPO_STACK_NATS_CLUSTER": "3",
        "TENPO_NATS_PORT": str(nats_port),
        "TENPO_NATS_CLUSTER_PORT": str(cluster_port),
        "TENPO_NATS_MONITOR_PORT": str(monitor_port),
        "TENPO_START_TIMEOUT": "600",
        # A saga whose replica was killed is taken over by the other one sooner (30 s).
        "ORDER_SAGA_LEASE_SECONDS": "10",
        # Every shopper calls from 127.0.0.1: the gateway's per-address bucket (20/s) is
        # meant for one client, not for the whole test's retries at once.
        "GATEWAY_ADDRESS_RATE": "1000",
        "GATEWAY_ADDRESS_BURST": "2000",
    }
    env.pop("TENPO_SERVICES", None)  # every service
    return env, base, nats_port


@pytest.mark.timeout(1800)
def test_the_whole_cluster_loses_a_nats_node_a_replica_of_every_service_and_postgres(
    runner_env: dict[str, str],
) -> None:
    began = time.monotonic()
    data_dir = Path(runner_env["TENPO_DATA_DIR"])
    env, base, nats_port = cluster_env(runner_env)
    nats_urls = [f"nats://127.0.0.1:{nats_port + node}" for node in range(3)]
    postgres_port = int(env["TENPO_POSTGRES_PORT"])

    def ports(service: str) -> list[int]:
        first = base + PORT_OFFSETS[service]
        return [first, first + REPLICA_PORT_STEP]

    runner = Runner("run", env)
    shoppers: list[Shopper] = []
    placed: list[str] = []
    killed: list[str] = []
    ingress = grpc.insecure_channel(f"127.0.0.1:{base + PORT_OFFSETS['gateway']}")
    inventory = round_robin(ports("inventory"))
    try:
        runner.wait_for(READY_BANNER, timeout=1200)
        started = time.monotonic() - began
        assert "nats cluster (3 nodes)" in runner.text
        assert all(f"{service}-2 " in runner.text for service in SERVICES)
        staff_token = (data_dir / "dev-staff-token").read_text().strip()
        sku = contested_sku(ingress)
        limit_stock(inventory, staff_token, sku)
        shoppers = [Shopper(ingress, sku, n, placed) for n in range(SHOPPERS)]
        for shopper in shoppers:
            shopper.start()
        wait_for_orders(shoppers, placed, ORDERS_BEFORE_NODE_LOSS, timeout=600)

        # The NATS node leading the order stream: the hardest one to lose mid-checkout.
        leader = asyncio.run(stream_leader(nats_urls, "order"))
        node = int((data_dir / "nats" / f"cluster-{leader}" / "nats-server.pid").read_text())
        os.kill(node, signal.SIGKILL)
        killed.append(f"nats node {leader}")
        runner.wait_for(f"{'nats' if leader == 1 else f'nats-{leader}'} stopped; restarting", 120)
        wait_for_orders(shoppers, placed, ORDERS_BEFORE_REPLICA_LOSS, timeout=600)

        # One replica of every service at once (the gateway is one process: it stays).
        replicas = [replica_process(runner, ports(service)[1], service) for service in SERVICES]
        for service, process in zip(SERVICES, replicas, strict=True):
            process.kill()
            killed.append(f"{service}-2")
        wait_for_lines(
            runner, [f"{s}-2 was killed by SIGKILL; restarting it in" for s in SERVICES], 120
        )
        wait_for_orders(shoppers, placed, ORDERS_BEFORE_POSTGRES_LOSS, timeout=600)

        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        killed.append("postgres")
        runner.wait_for("postgres stopped; restarting it in", timeout=120)
        for shopper in shoppers:
            shopper.join(timeout=900)
        shopped = time.monotonic() - began

        # Everything settles: sagas finish, relays publish, consumers catch up.
        state = asyncio.run(settle(data_dir, postgres_port, sku, timeout=300))
        streams = {
            service: asyncio.run(outbox_and_stream(data_dir, postgres_port, nats_urls, service))
            for service in SERVICES
        }
        events = asyncio.run(order_placed_events(data_dir, postgres_port))
        ours = {events[order] for order in state["placed"] if order in events}
        left = asyncio.run(unconsumed(data_dir, postgres_port, ours, timeout=180))
    finally:
        for shopper in shoppers:
            shopper.stop.set()
        ingress.close()
        inventory.close()
        runner.process.send_signal(signal.SIGINT)

    answers: Counter[str] = sum((s.answers for s in shoppers), Counter())
    order_stream = Counter(streams["order"][1])
    print(
        f"\ncluster shape: ready after {started:.0f} s, shopping done after {shopped:.0f} s; "
        f"killed {', '.join(killed)}; {SHOPPERS} shoppers, {len(placed)} orders placed of "
        f"{STOCK} units; orders by status "
        f"{ {STATUS_NAMES.get(k, k): n for k, n in state['orders'].items()} }; units committed "
        f"{state['committed']}; on hand {STOCK} -> {state['on_hand']} (ledger {state['ledger']}, "
        f"reserved {state['reserved']}, held {state['held']}); stranded {state['stranded']}; "
        f"answers {dict(answers)}; OrderPlaced {len(ours)}, unconsumed "
        f"{ {k: len(v) for k, v in left.items()} }; "
        + "; ".join(
            f"{service} outbox {len(outbox)} / stream {len(stream)} ({len(set(stream))} distinct)"
            for service, (outbox, stream) in streams.items()
        )
    )
    for shopper in shoppers:
        assert shopper.error is None, shopper.error
        assert shopper.sold_out, f"{shopper.name} still shopping"
    # No oversell: each order placed took one unit, committed by inventory, from the store.
    assert len(placed) == len(set(placed)) == len(state["placed"])
    assert set(placed) == state["placed"]
    assert state["committed"] == len(state["placed"]) <= STOCK
    assert state["on_hand"] == STOCK - state["committed"] == state["ledger"]
    assert state["elsewhere"] == 0
    # Nothing stranded: every saga finished, nothing held for an order that did not go
    # through, the level's reserved units are the active reservations'.
    assert set(state["orders"]) <= {PLACED, FAILED}, state["orders"]
    assert not state["stranded"], state["stranded"]
    assert state["reserved"] == state["held"] == 0
    # Shoppers saw successes, retryable answers (retried) and the sold-out refusal only.
    unexpected = {
        answer
        for answer in answers
        if answer.split()[0] not in EXPECTED_CODES and answer not in EXPECTED_REFUSALS
    }
    assert not unexpected, answers
    # No event lost, none published twice; each order's OrderPlaced once, and consumed.
    for service, (outbox, stream) in streams.items():
        assert len(stream) == len(set(stream)), service
        assert set(stream) == outbox, service
    assert len(ours) == len(state["placed"])
    assert all(order_stream[event] == 1 for event in ours)
    assert not left, left
    assert runner.finish(timeout=180) == 0, runner.text
