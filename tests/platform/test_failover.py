"""Failover of the whole system in the cluster shape (`make run` with a three-node NATS
JetStream cluster and two replicas of every service), under steady checkouts through the
gateway: the NATS node leading the order stream is SIGKILLed, then one replica of every
service, then PostgreSQL; the dev stack's supervisor starts each again.

Afterwards, printed and asserted: no event lost (every service's outbox published, each
event in its stream exactly once, every OrderPlaced consumed by the customer and
notification services), no oversell (every stock level's ledger, reservations and on-hand
agree, reserved within on-hand), no stranded reservation (none active for an order that
did not hold it, none past its expiry), and the shoppers saw successes and retryable
answers (503/504, retried with the same request_id) — never an INTERNAL 500.

The single-process faults of one service are in test_faults.py; this test reuses the
cluster-shape helpers of tests/devtools/test_cluster_shape.py (inventory alone there)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from tenpo.customer.v1 import identity_service_pb2, identity_service_pb2_grpc
from tenpo.customer.v1 import resources_pb2 as customer_pb
from tenpo.devtools.stack.config import PORT_OFFSETS, REPLICA_PORT_STEP
from tenpo.devtools.stack.runner import READY_BANNER
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.devtools.test_cluster_shape import (
    connect,
    outbox_and_stream,
    port_ranges,
    replica_process,
    round_robin,
    stream_leader,
)
from tests.stack import Runner, quiet_ports

pytestmark = pytest.mark.integration

WEB_KEY = "pk_web_dev_tenpo_0000000000"
STORE = "tokyo-shibuya"
CARD = "4242424242424242"
SERVICES = ("catalog", "inventory", "customer", "cart", "order", "notification")
SHOPPERS = 3
#: Orders placed before the NATS node dies, before the replicas die, before PostgreSQL dies,
#: and in all.
ORDERS_BEFORE_NODE_LOSS = 3
ORDERS_BEFORE_REPLICA_LOSS = 8
ORDERS_BEFORE_POSTGRES_LOSS = 13
ORDERS = 18
#: HTTP answers a shopper retries (the same step, the same request_id): the gateway's
#: UNAVAILABLE and DEADLINE_EXCEEDED, and a connection the gateway dropped.
RETRYABLE = {502, 503, 504}


def error_reason(answer: bytes) -> str:
    """The ErrorInfo reason of a gateway error body, if it has one."""
    try:
        details = json.loads(answer).get("error", {}).get("details", [])
    except (ValueError, AttributeError):
        return ""
    return next((d["reason"] for d in details if isinstance(d, dict) and "reason" in d), "")


class Shopper(threading.Thread):
    """Checks out again and again through the gateway's HTTP API (active cart, one line,
    click & collect, card), each order with one request_id kept across its retries."""

    def __init__(self, port: int, token: str, sku: str, placed: Counter[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.sku, self.placed = port, token, sku, placed
        self.statuses: Counter[int] = Counter()
        self.reasons: Counter[str] = Counter()
        self.orders: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + 300
        data = None if body is None else json.dumps(body).encode()
        headers = {"x-api-key": WEB_KEY, "Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                connection.request(method, path, data, headers)
                response = connection.getresponse()
                status, answer = response.status, response.read()
            except (OSError, http.client.HTTPException):
                status, answer = 502, b""  # the gateway unreachable for a moment
            finally:
                connection.close()
            self.statuses[status] += 1
            if status == 200:
                return json.loads(answer) if answer else {}
            self.reasons[f"{status} {error_reason(answer)}"] += 1
            if status not in RETRYABLE or time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: HTTP {status} {answer[:300]!r}")
            time.sleep(0.5)

    def checkout(self) -> None:
        cart = self.call("GET", "/v1/carts:active")
        if not any(line.get("sku") == self.sku for line in cart.get("lineItems", [])):
            cart = self.call(
                "POST", f"/v1/carts/{cart['id']}/lineItems", {"sku": self.sku, "quantity": 1}
            )
        if cart.get("fulfillment", {}).get("storeId") != STORE:
            cart = self.call(
                "PATCH",
                f"/v1/carts/{cart['id']}",
                {
                    "cart": {
                        "id": cart["id"],
                        "etag": cart["etag"],
                        "fulfillment": {"method": "FULFILLMENT_METHOD_PICKUP", "storeId": STORE},
                    },
                    "updateMask": "fulfillment",
                },
            )
        order = self.call(
            "POST",
            "/v1/orders",
            {
                "cartId": cart["id"],
                "cartEtag": cart["etag"],
                "payment": {"method": "PAYMENT_METHOD_CARD", "cardToken": CARD},
                "requestId": uuid.uuid4().hex,
            },
        )
        self.orders.append(order["id"])
        self.placed[order.get("status", "")] += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set() and sum(self.placed.values()) < ORDERS:
                self.checkout()
        except BaseException as error:
            self.error = error


def wait_for_orders(
    shoppers: list[Shopper], placed: Counter[str], count: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while sum(placed.values()) < count:
        for shopper in shoppers:
            if shopper.error is not None:
                raise shopper.error
        if all(not s.is_alive() for s in shoppers):
            raise AssertionError(f"shoppers stopped at {dict(placed)}")
        assert time.monotonic() < deadline, f"only {dict(placed)} orders in {timeout} s"
        time.sleep(0.2)


def register_shoppers(customer_ports: list[int]) -> list[str]:
    """Shoppers register straight at the customer service (the gateway rightly limits
    registrations per address); their access tokens."""
    channel = round_robin(customer_ports)
    identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
    web = ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET).metadata("WEB")
    tokens = []
    try:
        for n in range(SHOPPERS):
            registered = identity.Register(
                identity_service_pb2.RegisterRequest(
                    email=f"failover{n}.{uuid.uuid4().hex[:6]}@example.jp",
                    password="failover shopper password",
                    name=customer_pb.PersonName(family_name="試験", given_name=f"客{n}"),
                    locale="ja-JP",
                ),
                metadata=web,
                timeout=60,
            )
            tokens.append(registered.tokens.access_token)
    finally:
        channel.close()
    return tokens


def stock_up(inventory_ports: list[int], staff_token: str, skus: list[str]) -> None:
    """Receive stock for the shoppers' SKUs, once inventory has heard of them: its projection
    of the catalog's products may still be catching up with the seed's events."""
    channel = round_robin(inventory_ports)
    stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)
    deadline = time.monotonic() + 600
    try:
        for sku in skus:
            while True:
                try:
                    stub.AdjustStock(
                        inventory_api.AdjustStockRequest(
                            sku=sku,
                            location_id=STORE,
                            quantity=10_000,
                            reason=inventory_pb.MOVEMENT_REASON_RECEIPT,
                            request_id=f"failover-{sku}",
                        ),
                        metadata=[("authorization", f"Bearer {staff_token}")],
                        timeout=60,
                    )
                    break
                except grpc.RpcError as error:
                    unknown = error.code() is grpc.StatusCode.FAILED_PRECONDITION
                    if not unknown or time.monotonic() > deadline:
                        raise
                    time.sleep(2)
    finally:
        channel.close()


def products(port: int) -> list[str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/v1/products?pageSize=20", headers={"x-api-key": WEB_KEY})
        listed = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    return [p["variants"][0]["sku"] for p in listed["products"] if p.get("variants")][:SHOPPERS]


async def stock_invariants(data_dir: Path, postgres_port: int, skus: list[str]) -> dict[str, Any]:
    """Per SKU at the store: on hand, reserved, what the ledger adds up to and what active
    reservations hold; asserted equal by the caller."""
    connection = await connect(data_dir, postgres_port, "inventory")
    try:
        found = {}
        for sku in skus:
            level = await connection.fetchrow(
                "SELECT on_hand, reserved FROM stock_levels WHERE sku = $1 AND location_id = $2",
                sku,
                STORE,
            )
            ledger = await connection.fetchval(
                "SELECT coalesce(sum(quantity), 0) FROM movements "
                "WHERE sku = $1 AND location_id = $2",
                sku,
                STORE,
            )
            held = await connection.fetchval(
                "SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l "
                "JOIN reservations r ON r.id = l.reservation_id "
                "WHERE r.state = 1 AND l.sku = $1 AND l.location_id = $2",
                sku,
                STORE,
            )
            found[sku] = {
                "on_hand": level["on_hand"],
                "reserved": level["reserved"],
                "ledger": int(ledger),
                "active_reservations": int(held),
            }
        return found
    finally:
        await connection.close()


async def stranded(data_dir: Path, postgres_port: int) -> list[str]:
    """Active reservations no one will commit or release: past their expiry (the expiry
    loop must have released them), or held for an order that failed or does not exist."""
    inventory = await connect(data_dir, postgres_port, "inventory")
    order = await connect(data_dir, postgres_port, "order")
    try:
        active = await inventory.fetch(
            "SELECT owner, expires_at < now() - interval '30 seconds' AS overdue "
            "FROM reservations WHERE state = 1"
        )
        statuses = {
            str(row["id"]): row["status"]
            for row in await order.fetch("SELECT id, status FROM orders")
        }
    finally:
        await inventory.close()
        await order.close()
    bad = []
    for row in active:
        owner = row["owner"]
        if row["overdue"]:
            bad.append(f"{owner} (expired)")
        elif owner.startswith("orders/"):
            status = statuses.get(owner.removeprefix("orders/"))
            # FAILED (5) or CANCELLED (4) orders must have released their stock.
            if status is None or status in (4, 5):
                bad.append(f"{owner} (order status {status})")
    return bad


async def consumed(data_dir: Path, postgres_port: int, service: str) -> set[str]:
    connection = await connect(data_dir, postgres_port, service)
    try:
        return {
            str(row["event_id"]) for row in await connection.fetch("SELECT event_id FROM inbox")
        }
    finally:
        await connection.close()


async def placed_events(data_dir: Path, postgres_port: int) -> set[str]:
    connection = await connect(data_dir, postgres_port, "order")
    try:
        rows = await connection.fetch(
            "SELECT id FROM outbox WHERE event_type = 'tenpo.order.v1.OrderPlaced'"
        )
        return {str(row["id"]) for row in rows}
    finally:
        await connection.close()


async def eventually(check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(1)


@pytest.mark.timeout(3300)
def test_the_whole_system_loses_a_nats_node_a_replica_of_every_service_and_postgres(
    runner_env: dict[str, str],
) -> None:
    data_dir = Path(runner_env["TENPO_DATA_DIR"])
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
    }
    env.pop("TENPO_SERVICES", None)  # every service
    nats_urls = [f"nats://127.0.0.1:{nats_port + node}" for node in range(3)]
    postgres_port = int(env["TENPO_POSTGRES_PORT"])
    http_port = int(env["GATEWAY_HTTP_PORT"])

    def ports(service: str) -> list[int]:
        first = base + PORT_OFFSETS[service]
        return [first, first + REPLICA_PORT_STEP]

    runner = Runner("run", env)
    shoppers: list[Shopper] = []
    placed: Counter[str] = Counter()
    killed: list[str] = []
    try:
        # A busy machine took over 15 minutes to migrate and seed two replicas of everything.
        runner.wait_for(READY_BANNER, timeout=1800)
        assert "nats cluster (3 nodes)" in runner.text
        staff_token = (data_dir / "dev-staff-token").read_text().strip()
        skus = products(http_port)
        stock_up(ports("inventory"), staff_token, skus)
        tokens = register_shoppers(ports("customer"))
        shoppers = [
            Shopper(http_port, token, skus[n % len(skus)], placed) for n, token in enumerate(tokens)
        ]
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

        # One replica of every service, at once (the gateway runs one process: it stays).
        replicas = [replica_process(runner, ports(service)[1], service) for service in SERVICES]
        for service, process in zip(SERVICES, replicas, strict=True):
            process.kill()
            killed.append(f"{service}-2")
        for service in SERVICES:
            runner.wait_for(f"{service}-2 was killed by SIGKILL; restarting it in", timeout=120)
        wait_for_orders(shoppers, placed, ORDERS_BEFORE_POSTGRES_LOSS, timeout=900)

        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        killed.append("postgres")
        runner.wait_for("postgres stopped; restarting it in", timeout=120)
        wait_for_orders(shoppers, placed, ORDERS, timeout=900)
        for shopper in shoppers:
            shopper.join(timeout=300)

        # Everything settles: sagas finish, relays publish, consumers catch up.
        streams = {
            service: asyncio.run(outbox_and_stream(data_dir, postgres_port, nats_urls, service))
            for service in SERVICES
        }
        orders_placed = asyncio.run(placed_events(data_dir, postgres_port))

        async def all_consumed() -> dict[str, set[str]]:
            missing = {
                service: orders_placed - await consumed(data_dir, postgres_port, service)
                for service in ("customer", "notification")
            }
            return {} if not any(missing.values()) else missing

        async def none_stranded() -> bool:
            return not await stranded(data_dir, postgres_port)

        unconsumed = asyncio.run(eventually(all_consumed, 180))
        asyncio.run(eventually(none_stranded, 180))
        left_stranded = asyncio.run(stranded(data_dir, postgres_port))
        stock = asyncio.run(stock_invariants(data_dir, postgres_port, skus))
    finally:
        for shopper in shoppers:
            shopper.stop.set()
        runner.process.send_signal(signal.SIGINT)

    statuses: Counter[int] = sum((s.statuses for s in shoppers), Counter())
    reasons: Counter[str] = sum((s.reasons for s in shoppers), Counter())
    print(
        f"\nfailover: killed {', '.join(killed)}; orders {dict(placed)}; HTTP answers "
        f"{dict(statuses)} {dict(reasons)}; "
        + "; ".join(
            f"{service} outbox {len(outbox)} / stream {len(stream)} ({len(set(stream))} distinct)"
            for service, (outbox, stream) in streams.items()
        )
        + f"; OrderPlaced {len(orders_placed)}, unconsumed {unconsumed or 0}; "
        f"stranded {left_stranded}; stock {stock}"
    )
    for shopper in shoppers:
        assert shopper.error is None, shopper.error
    assert sum(placed.values()) >= ORDERS
    assert set(placed) == {"ORDER_STATUS_PLACED"}, placed
    # Shoppers saw successes and retryable answers (retried), never INTERNAL.
    assert 500 not in statuses, reasons
    assert set(statuses) <= {200} | RETRYABLE, reasons
    # No event lost, none published twice, each OrderPlaced consumed.
    for service, (outbox, stream) in streams.items():
        assert len(stream) == len(set(stream)), service
        assert set(stream) == outbox, service
    assert len(orders_placed) >= ORDERS
    assert not unconsumed, unconsumed
    # No oversell, nothing stranded.
    for sku, level in stock.items():
        assert level["ledger"] == level["on_hand"], sku
        assert level["active_reservations"] == level["reserved"], sku
        assert 0 <= level["reserved"] <= level["on_hand"], sku
    assert not left_stranded, left_stranded
    assert runner.finish(timeout=180) == 0, runner.text
