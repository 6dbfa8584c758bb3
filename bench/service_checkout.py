"""Checkout benchmark: whole checkouts through the gateway's HTTP/JSON API by many concurrent
shoppers — get the active cart, add two lines, choose click & collect, place the order
with the sandbox card — against the bare grpc.aio health Check in the same run.

The whole system runs as ``make run`` starts it (``python -m tenpo.devtools.stack run`` in a
scratch data directory: embedded PostgreSQL and NATS, every service and the gateway in its
own process, the demo data seeded); this client is one more process on the same cores.
Each shopper is a registered customer with a cart of their own; staff stock the two SKUs
deeply first, so every checkout can succeed. Besides the closed-loop throughput, the
latency at 70 % of it (open loop) and each HTTP step's share of a checkout are printed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2

from bench.harness import Report, free_port, interleaved
from bench.kit import BASELINE, CONCURRENCY, bare_health_server
from bench.service_cart import CpuMeter
from bench.service_gateway import HttpConnection, open_loop
from tenpo.customer.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from tenpo.devtools.stack.config import PORT_OFFSETS
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET

WEB_KEY = "pk_web_dev_tenpo_0000000000"
STORE = "tokyo-shibuya"
CARD = "4242424242424242"
#: Concurrent shoppers (BENCH_CHECKOUT_SHOPPERS for experiments).
SHOPPERS = int(os.environ.get("BENCH_CHECKOUT_SHOPPERS", CONCURRENCY))
READY = "Press Ctrl-C to stop."
CUSTOMER_PORT_OFFSET = PORT_OFFSETS["customer"]
STEPS = ("cart", "add line 1", "add line 2", "fulfilment", "place order")


class Http:
    """JSON over one keep-alive connection, opened again when the server closed it (the
    gateway closes connections idle for a few seconds, e.g. during the baseline's rounds)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: HttpConnection | None = None

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = await HttpConnection.open(self.port)
            try:
                return await self.connection.request(request)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: bench", f"x-api-key: {WEB_KEY}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        status, answer = await self._send(request)
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {answer[:300]!r}")
        return json.loads(answer) if answer else {}


class Shopper:
    def __init__(self, http: Http, token: str) -> None:
        self.http = http
        self.token = token


async def _checkout(shopper: Shopper, skus: list[str], steps: dict[str, list[float]]) -> None:
    http, token = shopper.http, shopper.token
    timings: list[float] = [time.perf_counter()]
    cart = await http.call("GET", "/v1/carts:active", token=token)
    timings.append(time.perf_counter())
    for sku in skus:
        cart = await http.call(
            "POST", f"/v1/carts/{cart['id']}/lineItems", {"sku": sku, "quantity": 1}, token
        )
        timings.append(time.perf_counter())
    cart = await http.call(
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
        token,
    )
    timings.append(time.perf_counter())
    order = await http.call(
        "POST",
        "/v1/orders",
        {
            "cartId": cart["id"],
            "cartEtag": cart["etag"],
            "payment": {"method": "PAYMENT_METHOD_CARD", "cardToken": CARD},
            "requestId": uuid.uuid4().hex,
        },
        token,
    )
    timings.append(time.perf_counter())
    order = order.get("order", order)
    if order.get("status") != "ORDER_STATUS_PLACED":
        raise RuntimeError(f"not placed: {order.get('status')}")
    for name, start, end in zip(STEPS, timings[:-1], timings[1:], strict=True):
        steps[name].append((end - start) * 1000)


def _reason(error: Exception) -> str:
    """The step and the stable reason of a failed checkout (or the exception's name)."""
    text = str(error)
    if '"reason":"' in text:
        return text.split(" ", 2)[1] + " " + text.split('"reason":"', 1)[1].split('"', 1)[0]
    return f"{type(error).__name__}: {text[:80]}"


async def _stock(admin: Http, sku: str, staff_token: str, wait_seconds: float = 300) -> None:
    """Stock a demo SKU deeply at the store. Inventory learns the catalog's SKUs from its
    events: on a busy machine the projection may not have this one yet right after start
    (SKU_UNKNOWN), so it is asked again until it has (at most ``wait_seconds``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        try:
            await admin.call(
                "POST",
                f"/v1/locations/{STORE}/stockLevels/{sku}:adjust",
                {"quantity": 1_000_000, "reason": "MOVEMENT_REASON_RECEIPT"},
                staff_token,
            )
            return
        except RuntimeError as error:
            if "SKU_UNKNOWN" not in str(error) or loop.time() >= deadline:
                raise
            await asyncio.sleep(1.0)


async def _prepare(
    port: int, data_dir: Path, customer_target: str
) -> tuple[list[Shopper], list[str]]:
    admin = Http(port)
    credentials = json.loads((data_dir / "dev-credentials.json").read_text("utf-8"))
    staff = await admin.call(
        "POST",
        "/v1/identity:signInStaff",
        {"email": credentials["staff"]["email"], "password": credentials["staff"]["password"]},
    )
    staff_token = staff["tokens"]["accessToken"]
    listed = await admin.call("GET", "/v1/products?pageSize=20")
    skus = [p["variants"][0]["sku"] for p in listed["products"] if p.get("variants")][:2]
    for sku in skus:
        await _stock(admin, sku, staff_token)
    # Shoppers register straight at the customer service: the gateway rightly limits
    # registrations and sign-ins per address, and this is set-up, not what is measured.
    shoppers = []
    async with grpc.aio.insecure_channel(customer_target) as channel:
        identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        web = ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET).metadata("WEB")
        for n in range(SHOPPERS):
            registered = await identity.Register(
                identity_service_pb2.RegisterRequest(
                    email=f"shopper{n}.{uuid.uuid4().hex[:6]}@example.jp",
                    password="bench shopper password",  # noqa: S106 - a bench account
                    name=resources_pb2.PersonName(family_name="買物", given_name=f"客{n}"),
                    locale="ja-JP",
                ),
                metadata=web,
                timeout=60,
            )
            http = Http(port)
            shoppers.append(Shopper(http, registered.tokens.access_token))
    admin.close()
    return shoppers, skus


def _stack_meter(data_dir: Path) -> CpuMeter | None:
    """The CPU of the stack's service processes (found by the data directory they were
    given) and of its PostgreSQL with every backend; None when they cannot be found."""
    services = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = process.info["cmdline"] or []
        module = next((a for a in command if a.startswith("services.")), None)
        if "-m" not in command or module is None:
            continue
        try:
            if process.environ().get("TENPO_DATA_DIR") == str(data_dir):
                services[module.removeprefix("services.")] = process.info["pid"]
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    postmaster = data_dir / "postgres" / "postmaster.pid"
    if not services or not postmaster.exists():
        return None
    pid = int(postmaster.read_text(encoding="utf-8").split()[0])
    return CpuMeter(services, pid)


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _line in process.stdout:
        pass


async def _wait_ready(process: subprocess.Popen[str], seconds: float = 1200) -> None:
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        line = await asyncio.to_thread(process.stdout.readline)
        if not line and process.poll() is not None:
            raise RuntimeError("the stack stopped while starting")
        if READY in line:
            return
    raise RuntimeError("the stack did not start in time")


async def run(report: Report, duration: float) -> None:
    # For experiments: BENCH_CHECKOUT_STACK=<data dir>:<gateway HTTP port>:<port base>
    # measures a stack already running (``make run``) instead of starting one.
    existing = os.environ.get("BENCH_CHECKOUT_STACK")
    if existing:
        data_dir, port, port_base = existing.rsplit(":", 2)
        customer = f"127.0.0.1:{int(port_base) + CUSTOMER_PORT_OFFSET}"
        await _measure(report, duration, int(port), Path(data_dir), customer)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="tenpo-bench-checkout-"))
    base = free_port()
    while base > 60000:
        base = free_port()
    http_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_DATABASE_URL") and key != "TENPO_NATS_URL"
    } | {
        "TENPO_DATA_DIR": str(data_dir),
        "TENPO_PORT_BASE": str(base),
        "GATEWAY_HTTP_PORT": str(http_port),
        "TENPO_POSTGRES_PORT": str(free_port()),
        "TENPO_NATS_PORT": str(free_port()),
        "TENPO_NATS_MONITOR_PORT": str(free_port()),
        "TENPO_SMTP_PORT": str(free_port()),
        "TENPO_LOG_LEVEL": "WARNING",
    }
    stack = subprocess.Popen(  # noqa: ASYNC220 - started once; its output is read in a thread
        [sys.executable, "-m", "tenpo.devtools.stack", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await _wait_ready(stack)
        # Keep reading what the stack prints, or it blocks once the pipe is full.
        threading.Thread(target=_drain, args=(stack,), daemon=True).start()
        customer = f"127.0.0.1:{base + CUSTOMER_PORT_OFFSET}"
        await _measure(report, duration, http_port, data_dir, customer)
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(stack.wait, 120)
        except subprocess.TimeoutExpired:
            stack.kill()
            await asyncio.to_thread(stack.wait)


async def _measure(
    report: Report, duration: float, http_port: int, data_dir: Path, customer_target: str
) -> None:
    shoppers, skus = await _prepare(http_port, data_dir, customer_target)
    idle: asyncio.Queue[Shopper] = asyncio.Queue()
    for shopper in shoppers:
        idle.put_nowait(shopper)
    steps: dict[str, list[float]] = defaultdict(list)
    failures: Counter[str] = Counter()

    async def checkout(_i: int) -> None:
        shopper = await idle.get()
        try:
            await _checkout(shopper, skus, steps)
        except Exception as error:
            failures[_reason(error)] += 1
            raise
        finally:
            idle.put_nowait(shopper)

    check = health_pb2.HealthCheckRequest()
    async with bare_health_server() as bare:
        baseline, checkouts = await interleaved(
            [
                (f"{BASELINE} (checkout run)", lambda _i: bare.Check(check)),
                ("checkout: whole checkout through the gateway's HTTP API", checkout),
            ],
            concurrency=SHOPPERS,
            duration=max(duration, 5.0),
        )
    steps.clear()
    rate = max(checkouts.throughput * 0.7, 1.0)
    # CPU per checkout, by process: unlike throughput on a shared machine, comparable
    # between runs whatever else the machine runs.
    meter = _stack_meter(data_dir)
    before = meter.snapshot() if meter else {}
    latencies = await open_loop(checkout, rate, max(duration, 5.0) * 2)
    after = meter.snapshot() if meter else {}
    report.add(baseline)
    report.add(checkouts)
    report.ratio(
        "checkout (gateway HTTP) / bare grpc.aio health Check",
        checkouts.throughput,
        baseline.throughput,
        "goal >= 0.0625 (1/16)",
    )
    report.note(
        f"checkouts {checkouts.throughput:.1f}/s with {SHOPPERS} shoppers: p50"
        f" {checkouts.percentile(50):.0f} ms, p99 {checkouts.percentile(99):.0f} ms"
        f" ({checkouts.errors} errors)"
    )
    if failures:
        report.note(
            "failed checkouts by reason: "
            + ", ".join(f"{reason} ×{n}" for reason, n in failures.most_common(5))
        )
    ordered = sorted(latencies)
    if ordered:
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        report.note(
            f"checkout at 70 % of saturation ({rate:.1f}/s, open loop): p50 {p50:.0f} ms,"
            f" p99 {p99:.0f} ms ({len(ordered)} done) — goal p99 < 250 ms"
        )
    if after and latencies:
        per_checkout = {n: (after[n] - before[n]) * 1000 / len(latencies) for n in after}
        report.note(
            "CPU ms per checkout (open loop): "
            + ", ".join(f"{n} {ms:.1f}" for n, ms in sorted(per_checkout.items()))
            + f"; total {sum(per_checkout.values()):.1f}"
        )
    total = sum(sum(v) for v in steps.values()) or 1.0
    report.note(
        "where a checkout's time goes (open loop, median ms and share): "
        + ", ".join(
            f"{name} {sorted(steps[name])[len(steps[name]) // 2]:.0f} ms"
            f" ({100 * sum(steps[name]) / total:.0f} %)"
            for name in STEPS
            if steps[name]
        )
    )


if __name__ == "__main__":
    sys.exit("run through `make bench`")
