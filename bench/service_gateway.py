"""Gateway benchmarks: GetProduct through the gateway (HTTP/JSON) vs straight to the catalog
over gRPC, with the same concurrency; the gateway's gRPC port — the edge (HAProxy,
``GATEWAY_EDGE=haproxy``) with a device token, which it sends straight to the catalog — and
the Python ingress behind it (a publishable key) against direct gRPC in alternating rounds,
beside one HAProxy hop with no checks at all (the floor of any proxy); then the median
latency the HTTP path adds at half of its saturation throughput (open-loop load at a fixed
rate).

The catalog runs with the demo catalog (216 products, the hot set of the catalog suite);
catalog, gateway and this client each run in their own process. The HTTP client is a
minimal keep-alive HTTP/1.1 client (like wrk): a Python HTTP library would spend more CPU
per request than the gateway does, on the same cores, and measure itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench import floor_proxy
from bench.harness import Measurement, Report, cpu_seconds, free_port, measure, subprocess_server
from bench.kit import CONCURRENCY
from services.catalog.app import definition as catalog_definition
from services.catalog.seed import seed_demo_catalog
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.keys import ensure_dev_keys, mint_token
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres
from tenpo.kit import migrations
from tenpo.kit.db import Database

WEB_KEY = "pk_web_dev_tenpo_0000000000"
ISSUER = "https://auth.bench.tenpo"
HOT_PRODUCTS = 200
ROUNDS = 3


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: request bytes in, (status, body) out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[HttpConnection] = []

    async def request(self, data: bytes) -> bytes:
        connection = self._idle.pop() if self._idle else await HttpConnection.open(self.port)
        try:
            status, body = await connection.request(data)
        except Exception:
            connection.close()
            raise
        self._idle.append(connection)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return body

    def close(self) -> None:
        for connection in self._idle:
            connection.close()


async def open_loop(
    call: Callable[[int], Awaitable[Any]], rate: float, duration: float
) -> list[float]:
    """Start ``rate`` calls per second for ``duration`` seconds regardless of how fast they
    finish (no coordinated omission); latencies in ms."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - started) * 1000)

    start = loop.time()
    total = int(rate * duration)
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - start) * rate) + 1)
        while sent < due:
            tasks.append(asyncio.ensure_future(one(sent)))
            sent += 1
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


async def _wait_http(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = await HttpConnection.open(port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        status, _ = await connection.request(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        connection.close()
        if status == 200:
            return
    raise RuntimeError("the gateway did not start")


async def run(report: Report, duration: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenpo-bench-gateway-"))
    with (
        EmbeddedPostgres(root / "pg", free_port(), durable=False) as postgres,
        EmbeddedNats(root / "nats", free_port()) as nats,
    ):
        url = postgres.ensure_database("catalog", secrets.token_urlsafe(12))
        await migrations.upgrade(catalog_definition.migrations, url)  # type: ignore[arg-type]
        seed_db = Database(url)
        await seed_demo_catalog(seed_db)
        await seed_db.dispose()

        catalog_port, gateway_grpc, gateway_http = free_port(), free_port(), free_port()
        keys = ensure_dev_keys(root / "keys")
        auth_env = {
            "TENPO_AUTH_JWKS_FILE": str(keys.jwks_path),
            "TENPO_AUTH_ISSUER": ISSUER,
            "TENPO_AUTH_AUDIENCE": "tenpo",
        }
        device_token = mint_token(
            keys.private_key_pem,
            keys.kid,
            subject="bench-kiosk",
            kind="device",
            channel="KIOSK",
            issuer=ISSUER,
            audience="tenpo",
            ttl=timedelta(hours=2),
        )
        catalog_env = {
            **auth_env,
            # One device makes every call: its per-principal limit is not the bench's point
            # (the limiter still runs on every call that came through the edge).
            "CATALOG_EDGE_PRINCIPAL_RATE": "1000000",
            "CATALOG_EDGE_PRINCIPAL_BURST": "1000000",
            "CATALOG_DATABASE_URL": url,
            "CATALOG_GRPC_PORT": str(catalog_port),
            "CATALOG_NATS_URL": nats.url,
            "CATALOG_MIGRATE_ON_START": "false",
            "CATALOG_LOG_LEVEL": "WARNING",
        }
        ingress_port = free_port()
        edge = floor_proxy.available()
        gateway_env = {
            **auth_env,
            "GATEWAY_GRPC_PORT": str(gateway_grpc),
            "GATEWAY_HTTP_PORT": str(gateway_http),
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_TARGETS": f'{{"catalog": "127.0.0.1:{catalog_port}"}}',
            # The bench measures the proxy, not the limiter refusing a single client: on the
            # idle machine the web key's 2,000/s refused a sixth of the HTTP calls (429), and
            # the HTTP rate then counted only the rest.
            "GATEWAY_ADDRESS_RATE": "1000000",
            "GATEWAY_ADDRESS_BURST": "1000000",
            "GATEWAY_API_KEY_RATE": "1000000",
            "GATEWAY_API_KEY_BURST": "1000000",
            "GATEWAY_PRINCIPAL_RATE": "1000000",
            "GATEWAY_PRINCIPAL_BURST": "1000000",
        }
        if edge:
            # HAProxy on the gRPC port; the Python ingress behind it, measured on its own port.
            gateway_env |= {
                "GATEWAY_EDGE": "haproxy",
                "GATEWAY_EDGE_INGRESS_PORT": str(ingress_port),
            }
        else:
            ingress_port = gateway_grpc
            report.note(
                "gateway: haproxy is not installed (Debian's haproxy; `make bench` installs it "
                "as root): the edge and the floor of a proxy hop are not measured"
            )
        with contextlib.ExitStack() as servers:
            catalog = servers.enter_context(
                subprocess_server(["-m", "services.catalog", "serve"], catalog_env)
            )
            gateway = servers.enter_context(
                subprocess_server(["-m", "services.gateway"], gateway_env)
            )
            pids = {"gateway": gateway.pid, "catalog": catalog.pid}
            floor_port: int | None = None
            if edge:
                floor_port = free_port()
                pids["haproxy"] = servers.enter_context(
                    floor_proxy.haproxy(floor_port, catalog_port)
                ).pid
            async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_port}") as channel:
                await _compare(
                    report,
                    duration,
                    channel,
                    gateway_http,
                    Ports(ingress=ingress_port, edge=gateway_grpc if edge else None),
                    pids,
                    floor_port,
                    device_token,
                )


@dataclasses.dataclass(frozen=True)
class Ports:
    ingress: int  # the Python ingress (behind the edge when there is one)
    edge: int | None  # HAProxy: the gateway's gRPC port


async def _edge_pid(gateway_pid: int, seconds: float = 60) -> int:
    """HAProxy, the gateway's child (started once the ingress serves)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in psutil.Process(gateway_pid).children():
            if child.name() == "haproxy":
                return child.pid
        await asyncio.sleep(0.2)
    raise RuntimeError("the gateway started no edge")


async def _compare(
    report: Report,
    duration: float,
    channel: grpc.aio.Channel,
    gateway_http: int,
    ports: Ports,
    pids: dict[str, int],
    floor_port: int | None,
    device_token: str,
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=300
    )
    await _wait_http(gateway_http)
    if ports.edge is not None:
        pids = {**pids, "edge": await _edge_pid(pids["gateway"])}
    stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    metadata = (("x-tenpo-channel", "WEB"),)
    listed = await stub.ListProducts(
        api.ListProductsRequest(page_size=HOT_PRODUCTS), metadata=metadata
    )
    ids = [p.id for p in listed.products]
    grpc_requests = [api.GetProductRequest(id=i) for i in ids]
    http_requests = [
        f"GET /v1/products/{i} HTTP/1.1\r\nHost: bench\r\nx-api-key: {WEB_KEY}\r\n\r\n".encode()
        for i in ids
    ]
    pool = HttpPool(gateway_http)
    ingress_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.ingress}")
    ingress = catalog_service_pb2_grpc.CatalogServiceStub(ingress_channel)
    ingress_metadata = (("x-api-key", WEB_KEY),)
    floor_channel = grpc.aio.insecure_channel(f"127.0.0.1:{floor_port or ports.ingress}")
    floor = catalog_service_pb2_grpc.CatalogServiceStub(floor_channel)
    edge_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.edge or ports.ingress}")
    edge = catalog_service_pb2_grpc.CatalogServiceStub(edge_channel)
    device_metadata = (("authorization", f"Bearer {device_token}"),)

    def direct(i: int) -> Awaitable[Any]:
        return stub.GetProduct(grpc_requests[i % len(ids)], metadata=metadata)

    def through_gateway(i: int) -> Awaitable[Any]:
        return pool.request(http_requests[i % len(ids)])

    def through_ingress(i: int) -> Awaitable[Any]:
        return ingress.GetProduct(grpc_requests[i % len(ids)], metadata=ingress_metadata)

    def through_floor(i: int) -> Awaitable[Any]:
        # The same call as direct gRPC's, through HAProxy: nothing checked on the way.
        return floor.GetProduct(grpc_requests[i % len(ids)], metadata=metadata)

    def direct_device(i: int) -> Awaitable[Any]:
        return stub.GetProduct(grpc_requests[i % len(ids)], metadata=device_metadata)

    def through_edge(i: int) -> Awaitable[Any]:
        return edge.GetProduct(grpc_requests[i % len(ids)], metadata=device_metadata)

    def keyed_through_edge(i: int) -> Awaitable[Any]:
        return edge.GetProduct(grpc_requests[i % len(ids)], metadata=ingress_metadata)

    try:
        for i in range(len(ids)):  # warm every cache, as a running shop would be
            await direct(i)
            await through_gateway(i)
            await through_ingress(i)
            await direct_device(i)
            await through_edge(i)
            if floor_port:
                await through_floor(i)
                await keyed_through_edge(i)

        grpc_result = report.add(
            await measure(
                "gateway bench: GetProduct direct gRPC",
                direct,
                concurrency=CONCURRENCY,
                duration=duration,
            )
        )
        http_result = report.add(
            await measure(
                "gateway bench: GetProduct via gateway HTTP/JSON",
                through_gateway,
                concurrency=CONCURRENCY,
                duration=duration,
            )
        )
        report.ratio(
            "gateway HTTP/JSON GetProduct / direct gRPC (throughput)",
            http_result.throughput,
            grpc_result.throughput,
            "goal >= 0.60",
        )
        # The ingress against direct gRPC in alternating rounds (both paths see the same
        # background load), with the CPU each process spends per call: on a busy machine
        # the throughput ratio moves with the neighbours, the CPU per call much less.
        cpu: dict[str, dict[str, float]] = {}

        # The client is this process: it pays its gRPC client's part of every call.
        processes = {**pids, "client": os.getpid()}

        def counted(name: str, call: Callable[[int], Awaitable[Any]]) -> Any:
            cpu[name] = {"calls": 0.0, **{p: 0.0 for p in processes}}

            async def run_round(**options: Any) -> Measurement:
                before = {p: cpu_seconds(pid) for p, pid in processes.items()}
                result = await measure(name, call, **options)
                for p, pid in processes.items():
                    cpu[name][p] += cpu_seconds(pid) - before[p]
                cpu[name]["calls"] += result.calls  # warm-up calls are a small error
                return result

            return run_round

        runners = {
            "direct": counted("direct", direct),
            "ingress": counted("ingress", through_ingress),
            "direct_device": counted("direct_device", direct_device),
        }
        if ports.edge is not None:
            runners["edge"] = counted("edge", through_edge)
            runners["edge_keyed"] = counted("edge_keyed", keyed_through_edge)
        if floor_port:
            runners["haproxy"] = counted("haproxy", through_floor)
        rounds: dict[str, list[Measurement]] = {name: [] for name in runners}
        for _ in range(ROUNDS):
            for name, run_round in runners.items():
                rounds[name].append(
                    await run_round(concurrency=CONCURRENCY, duration=duration, warmup=0.3)
                )
        medians = {
            name: sorted(found, key=lambda m: m.throughput)[len(found) // 2]
            for name, found in rounds.items()
        }
        per_call = {
            name: {p: cpu[name][p] / max(1.0, cpu[name]["calls"]) * 1e6 for p in processes}
            for name in cpu
        }
        total = {name: sum(found.values()) for name, found in per_call.items()}

        def cpu_note(name: str) -> str:
            return ", ".join(
                f"{p} {per_call[name][p]:.0f} µs" for p in processes if per_call[name][p] >= 1
            )

        if ports.edge is not None:
            # What a signed-in device sees on the gateway's gRPC port: the edge.
            edge_result = report.add(
                dataclasses.replace(
                    medians["edge"],
                    name="gateway bench: GetProduct via the gateway's gRPC port (edge), device",
                )
            )
            report.add(
                dataclasses.replace(
                    medians["direct_device"], name="gateway bench: GetProduct direct gRPC, device"
                )
            )
            report.ratio(
                "gateway gRPC ingress (the edge) GetProduct / direct gRPC, device token "
                "(throughput, alternating rounds)",
                edge_result.throughput,
                medians["direct_device"].throughput,
                "goal >= 0.80",
            )
            report.ratio(
                "gateway gRPC ingress (the edge) / direct gRPC by CPU, device token "
                "(all processes' CPU per call)",
                total["direct_device"],
                total["edge"],
                "(information: steadier than throughput on a busy machine)",
            )
            report.ratio(
                "gateway gRPC ingress (the edge → Python ingress), publishable key / direct "
                "gRPC (throughput, alternating rounds)",
                medians["edge_keyed"].throughput,
                medians["direct"].throughput,
                "(information: keys, anonymous calls and streams take both hops)",
            )
            report.note(
                f"gateway: CPU per GetProduct call — the edge, device: {cpu_note('edge')}; "
                f"direct, device: {cpu_note('direct_device')}; the edge → Python ingress, "
                f"key: {cpu_note('edge_keyed')}"
            )
        ingress_result = report.add(
            dataclasses.replace(
                medians["ingress"], name="gateway bench: GetProduct via the Python ingress"
            )
        )
        report.ratio(
            "gateway Python ingress GetProduct, publishable key / direct gRPC "
            "(throughput, alternating rounds)",
            ingress_result.throughput,
            medians["direct"].throughput,
            "goal >= 0.80" if ports.edge is None else "(information: behind the edge)",
        )
        report.ratio(
            "gateway Python ingress / direct gRPC by CPU (all processes' CPU per call)",
            total["direct"],
            total["ingress"],
            "(information: steadier than throughput on a busy machine)",
        )
        report.note(
            f"gateway: CPU per GetProduct call — Python ingress: {cpu_note('ingress')}; "
            f"direct: {cpu_note('direct')}"
        )
        if floor_port:
            floor_result = report.add(
                dataclasses.replace(
                    medians["haproxy"], name="gateway bench: GetProduct via HAProxy (no checks)"
                )
            )
            report.ratio(
                "floor: GetProduct via HAProxy, one hop with no checks / direct gRPC "
                "(throughput, alternating rounds)",
                floor_result.throughput,
                medians["direct"].throughput,
                "(information: one hop, nothing checked)",
            )
            report.ratio(
                "floor: via HAProxy / direct gRPC by CPU (all processes' CPU per call)",
                total["direct"],
                total["haproxy"],
                "(information)",
            )
            report.note(f"gateway: CPU per GetProduct call — via HAProxy: {cpu_note('haproxy')}")

        # Interleaved rounds, median of the rounds' medians: the two paths see the same
        # background load (other processes on these cores), and one bad second does not
        # decide the figure.
        rate = 0.5 * min(http_result.throughput, grpc_result.throughput)
        direct_medians: list[float] = []
        gateway_medians: list[float] = []
        slice_seconds = max(1.0, duration / 2)
        for _ in range(ROUNDS):
            direct_medians.append(statistics.median(await open_loop(direct, rate, slice_seconds)))
            gateway_medians.append(
                statistics.median(await open_loop(through_gateway, rate, slice_seconds))
            )
        direct_ms = statistics.median(direct_medians)
        gateway_ms = statistics.median(gateway_medians)
        report.note(
            f"gateway: at {rate:.0f} req/s (half of the gateway path's saturation) median "
            f"GetProduct {direct_ms:.3f} ms direct, {gateway_ms:.3f} ms via the gateway: "
            f"+{gateway_ms - direct_ms:.3f} ms (goal <= 1 ms)"
        )
    finally:
        pool.close()
        await ingress_channel.close(None)
        await floor_channel.close(None)
        await edge_channel.close(None)


if __name__ == "__main__":
    sys.exit("run through `make bench`")
