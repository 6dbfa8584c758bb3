"""Cart benchmark: AddLineItem through the gRPC API — the real cart service in front of the
real catalog (demo data, prices for the web channel) and the real inventory (availability of
the line each change adds or resizes, kept a second per SKU by the cart) — against the bare
grpc.aio health Check in the same run, and the floor between them: that bare Check writing one
row to PostgreSQL (`bench.bare_write`), the best any RPC that persists a change could reach."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import Measurement, Report, free_port, interleaved, measure, subprocess_server
from bench.kit import BASELINE, CONCURRENCY
from services.cart.app import definition as cart_definition
from services.catalog.app import definition as catalog_definition
from services.catalog.seed import seed_demo_catalog
from services.inventory.app import definition as inventory_definition
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import cart_service_pb2_grpc
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres
from tenpo.kit import migrations
from tenpo.kit.db import Database

#: One guest cart per client worker (carts are not shared between shoppers).
CARTS = CONCURRENCY
WEB = (("x-tenpo-channel", "WEB"),)


async def _ready(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(
            # Generous: a service starting on a busy 2-core machine took over 120 s once.
            health_pb2.HealthCheckRequest(),
            wait_for_ready=True,
            timeout=600,
        )


async def _events_drained(catalog_url: str, cart_url: str, wait_seconds: float = 180.0) -> None:
    """Wait until the catalog published its outbox and the cart's handled-event count has
    stopped growing."""
    catalog, cart = Database(catalog_url), Database(cart_url)
    try:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        handled, steady = -1, 0
        while asyncio.get_running_loop().time() < deadline and steady < 3:
            async with catalog.engine.connect() as c:
                pending = (
                    await c.execute(
                        sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    )
                ).scalar_one()
            async with cart.engine.connect() as c:
                now = (await c.execute(sa.text("SELECT count(*) FROM inbox"))).scalar_one()
            steady = steady + 1 if pending == 0 and now == handled else 0
            handled = now
            await asyncio.sleep(1.0)
    finally:
        await catalog.dispose()
        await cart.dispose()


class CpuMeter:
    """CPU seconds (user + system) that named processes spent, for the CPU cost of a call per
    process: unlike throughput, that does not depend on what else the machine runs. A
    PostgreSQL server counts with its backends (those that ended too, through the
    postmaster's reaped-children times)."""

    def __init__(self, processes: dict[str, int], postmaster: int | None = None) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._postmaster = psutil.Process(postmaster) if postmaster else None

    def snapshot(self) -> dict[str, float]:
        taken = {}
        for name, process in self._processes.items():
            times = process.cpu_times()
            taken[name] = times.user + times.system
        if self._postmaster is not None:
            times = self._postmaster.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in self._postmaster.children(recursive=True):
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:
                    continue  # ended between the listing and the reading (then reaped: counted)
                total += child_times.user + child_times.system
            taken["postgresql"] = total
        return taken

    async def per_call(
        self, measuring: Callable[[], Awaitable[Measurement]]
    ) -> tuple[Measurement, dict[str, float]]:
        """The measurement, and each process's CPU milliseconds per successful call."""
        before = self.snapshot()
        measured = await measuring()
        after = self.snapshot()
        calls = max(measured.calls, 1)
        return measured, {name: (after[name] - before[name]) * 1000 / calls for name in after}


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text(encoding="utf-8").split()[0])


def _cpu_note(label: str, per_call: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in per_call.items())
    return f"CPU ms per call, {label}: {parts}; total {sum(per_call.values()):.2f}"


def _env(prefix: str, url: str, port: int, nats_url: str, **extra: str) -> dict[str, str]:
    return {
        f"{prefix}_DATABASE_URL": url,
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_NATS_URL": nats_url,
        f"{prefix}_MIGRATE_ON_START": "false",
        f"{prefix}_LOG_LEVEL": "WARNING",
        **extra,
    }


async def run(report: Report, duration: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenpo-bench-cart-"))
    with (
        EmbeddedPostgres(root / "pg", free_port(), durable=False) as postgres,
        EmbeddedNats(root / "nats", free_port()) as nats,
    ):
        urls = {
            name: postgres.ensure_database(name, secrets.token_urlsafe(12))
            for name in ("catalog", "inventory", "cart")
        }
        for name, definition in (
            ("catalog", catalog_definition),
            ("inventory", inventory_definition),
            ("cart", cart_definition),
        ):
            await migrations.upgrade(definition.migrations, urls[name])  # type: ignore[arg-type]
        seed_db = Database(urls["catalog"])
        await seed_demo_catalog(seed_db)
        await seed_db.dispose()
        ports = {name: free_port() for name in urls}
        targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        bare_port, floor_port = free_port(), free_port()
        floor_dsn = urls["cart"].replace("postgresql+asyncpg://", "postgresql://")
        with (
            subprocess_server(
                ["-m", "services.catalog", "serve"],
                _env("CATALOG", urls["catalog"], ports["catalog"], nats.url),
            ) as catalog_process,
            subprocess_server(
                ["-m", "services.inventory", "serve"],
                _env(
                    "INVENTORY",
                    urls["inventory"],
                    ports["inventory"],
                    nats.url,
                    INVENTORY_REQUIRE_KNOWN_SKUS="false",
                ),
            ) as inventory_process,
            subprocess_server(
                ["-m", "services.cart", "serve"],
                _env(
                    "CART",
                    urls["cart"],
                    ports["cart"],
                    nats.url,
                    CART_CATALOG_TARGET=targets["catalog"],
                    CART_INVENTORY_TARGET=targets["inventory"],
                    CART_MAX_QUANTITY_PER_LINE="999",
                    # Connections enough for every client at once: past the pool, SQLAlchemy
                    # opens overflow connections and closes them again on return, and that
                    # churn (a new PostgreSQL backend, type introspection and re-prepared
                    # statements each time) cost PostgreSQL 3.8 ms of CPU per change
                    # against 0.8 ms with this pool (see the cart README).
                    CART_DATABASE_POOL_SIZE=str(CONCURRENCY + 8),
                ),
            ) as cart_process,
            # The yardstick: a grpc.aio server with nothing but the standard health service,
            # in its own process (as bench.kit starts it; here its process is measured too).
            subprocess_server(["-m", "bench.bare_health", str(bare_port)]) as bare_process,
            subprocess_server(
                ["-m", "bench.bare_write", str(floor_port), floor_dsn]
            ) as floor_process,
        ):
            for target in targets.values():
                await _ready(target)
            # The seeded catalog announces every product and price once; the cart handles
            # those events as they arrive (forgetting cached prices, marking carts for a
            # reprice). Measure the steady state, not that start-up backlog.
            await _events_drained(urls["catalog"], urls["cart"])
            async with (
                grpc.aio.insecure_channel(targets["catalog"]) as catalog_channel,
                grpc.aio.insecure_channel(targets["cart"]) as cart_channel,
            ):
                catalog = catalog_service_pb2_grpc.CatalogServiceStub(catalog_channel)
                listed = await catalog.ListProducts(
                    catalog_api.ListProductsRequest(page_size=40), metadata=WEB
                )
                skus = [p.variants[0].sku for p in listed.products if p.variants]
                carts = cart_service_pb2_grpc.CartServiceStub(cart_channel)
                made = [
                    await carts.CreateCart(api.CreateCartRequest(), metadata=WEB)
                    for _ in range(CARTS)
                ]
                requests = [
                    api.AddLineItemRequest(
                        cart_id=c.cart.id, cart_token=c.cart_token, sku=sku, quantity=1
                    )
                    for sku in skus  # consecutive calls go to different carts
                    for c in made
                ]
                check = health_pb2.HealthCheckRequest()
                async with (
                    grpc.aio.insecure_channel(f"127.0.0.1:{bare_port}") as bare_channel,
                    grpc.aio.insecure_channel(f"127.0.0.1:{floor_port}") as floor_channel,
                ):
                    bare = health_pb2_grpc.HealthStub(bare_channel)
                    await bare.Check(check, wait_for_ready=True, timeout=30)
                    floor = health_pb2_grpc.HealthStub(floor_channel)
                    await floor.Check(check, wait_for_ready=True, timeout=60)

                    def add_line(i: int) -> Awaitable[Any]:
                        return carts.AddLineItem(requests[i % len(requests)], metadata=WEB)

                    baseline, floor_result, add = await interleaved(
                        [
                            (f"{BASELINE} (cart run)", lambda _i: bare.Check(check)),
                            ("floor: bare Check writing one row", lambda _i: floor.Check(check)),
                            ("cart: AddLineItem (catalog + inventory, guest, web)", add_line),
                        ],
                        concurrency=CONCURRENCY,
                        duration=duration,
                    )
                    # What each call costs in CPU, process by process: on a machine shared
                    # with other work the rates above move with the load, these much less.
                    client = os.getpid()
                    _, check_cpu = await CpuMeter(
                        {"server": bare_process.pid, "client": client}
                    ).per_call(
                        lambda: measure(
                            "cpu: health Check",
                            lambda _i: bare.Check(check),
                            concurrency=CONCURRENCY,
                            duration=duration,
                        )
                    )
                    _, floor_cpu = await CpuMeter(
                        {"server": floor_process.pid, "client": client},
                        postmaster=_postmaster_pid(postgres.data_dir),
                    ).per_call(
                        lambda: measure(
                            "cpu: floor",
                            lambda _i: floor.Check(check),
                            concurrency=CONCURRENCY,
                            duration=duration,
                        )
                    )
                    _, add_cpu = await CpuMeter(
                        {
                            "cart": cart_process.pid,
                            "catalog": catalog_process.pid,
                            "inventory": inventory_process.pid,
                            "client": client,
                        },
                        postmaster=_postmaster_pid(postgres.data_dir),
                    ).per_call(
                        lambda: measure(
                            "cpu: AddLineItem", add_line, concurrency=CONCURRENCY, duration=duration
                        )
                    )
    report.add(baseline)
    report.add(floor_result)
    report.add(add)
    report.ratio(
        "floor (bare Check writing one row) / bare grpc.aio health Check",
        floor_result.throughput,
        baseline.throughput,
        "information: the best any RPC that persists a change can reach",
    )
    report.ratio(
        "cart AddLineItem / bare grpc.aio health Check",
        add.throughput,
        baseline.throughput,
        "goal >= 0.50",
    )
    report.note(
        f"cart AddLineItem p50 {add.percentile(50):.1f} ms, p99 {add.percentile(99):.1f} ms"
        f" ({add.errors} errors)"
    )
    report.note(_cpu_note("bare health Check", check_cpu))
    report.note(_cpu_note("floor (bare Check writing one row)", floor_cpu))
    report.note(_cpu_note("cart AddLineItem", add_cpu))
    report.ratio(
        "cart AddLineItem / bare health Check by CPU per call (all processes)",
        sum(check_cpu.values()),
        sum(add_cpu.values()),
        "information: the ratio a CPU-bound machine would give",
    )
    report.ratio(
        "floor (bare Check writing one row) / bare health Check by CPU per call",
        sum(check_cpu.values()),
        sum(floor_cpu.values()),
        "information: the best any RPC that persists a change can reach",
    )


if __name__ == "__main__":
    sys.exit("run through `make bench`")
