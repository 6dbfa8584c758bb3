"""Inventory benchmark: hot-SKU reservations per second through the gRPC API, against the raw
baseline of pgbench running the single conditional UPDATE that decrements one hot row, at the
same concurrency on the same PostgreSQL. Oversell is checked afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import Measurement, Report, free_port, measure, subprocess_server
from services.inventory.app import definition
from services.inventory.seed import LOCATIONS
from services.inventory.store import LocationStore
from tenpo.devtools.keys import ensure_dev_keys, mint_token
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres
from tenpo.devtools.stack.postgres import postgres_bin_dir
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit import migrations
from tenpo.kit.db import Database

CONCURRENCY = 64
#: Alternating rounds of the gRPC run and pgbench; each side's median counts.
ROUNDS = 3
#: Client connections the calls are spread over, as many carts and order services would
#: open; with several server processes (SO_REUSEPORT) each connection lands on one of them.
CONNECTIONS = int(os.environ.get("BENCH_INVENTORY_CONNECTIONS", "8"))
HOT_SKU = "BENCH-HOT"
GRPC_LOCATION = "tokyo-shibuya"
PGBENCH_LOCATION = "tokyo-ginza"  # its own hot row in the same table, so the runs don't mix
UNITS = 1_000_000
#: The raw baseline: the one conditional UPDATE a reservation of one unit needs at least.
HOT_ROW_UPDATE = (
    "UPDATE stock_levels SET reserved = reserved + 1"
    " WHERE sku = 'BENCH-HOT' AND location_id = 'tokyo-ginza'"
    " AND on_hand - reserved - safety_stock >= 1;\n"
)
ISSUER, AUDIENCE = "https://auth.bench.tenpo", "tenpo"


async def _prepare(url: str) -> None:
    await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            for location in LOCATIONS:
                await LocationStore(uow.session).insert(location)
            for location_id in (GRPC_LOCATION, PGBENCH_LOCATION):
                await uow.session.execute(
                    sa.text(
                        "INSERT INTO stock_levels (sku, location_id, on_hand)"
                        " VALUES (:sku, :loc, :units)"
                    ),
                    {"sku": HOT_SKU, "loc": location_id, "units": UNITS},
                )
                await uow.session.execute(
                    sa.text(
                        "INSERT INTO movements (id, sku, location_id, quantity, reason, actor,"
                        " on_hand_after) VALUES (gen_random_uuid(), :sku, :loc, :units, 1,"
                        " 'system:bench', :units)"
                    ),
                    {"sku": HOT_SKU, "loc": location_id, "units": UNITS},
                )
            await uow.commit()
    finally:
        await db.dispose()


async def _oversold(url: str) -> tuple[int, int, int, int]:
    """(reserved on the level, units in active reservations, on hand, transactions that
    reserved) of the gRPC hot row; every reserving transaction wrote one StockChanged."""
    db = Database(url, pool_size=1, max_overflow=0)
    try:
        async with db.engine.connect() as conn:
            level = (
                await conn.execute(
                    sa.text(
                        "SELECT reserved, on_hand FROM stock_levels"
                        " WHERE sku = :sku AND location_id = :loc"
                    ),
                    {"sku": HOT_SKU, "loc": GRPC_LOCATION},
                )
            ).one()
            held = (
                await conn.execute(
                    sa.text(
                        "SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l"
                        " JOIN reservations r ON r.id = l.reservation_id"
                        " WHERE r.state = 1 AND l.sku = :sku AND l.location_id = :loc"
                    ),
                    {"sku": HOT_SKU, "loc": GRPC_LOCATION},
                )
            ).scalar_one()
            batches = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FROM outbox"
                        " WHERE event_type = 'tenpo.inventory.v1.StockChanged'"
                    )
                )
            ).scalar_one()
    finally:
        await db.dispose()
    return int(level.reserved), int(held), int(level.on_hand), int(batches)


def _pgbench(url: str, root: Path, duration: float) -> float:
    script = root / "hot_update.sql"
    script.write_text(HOT_ROW_UPDATE)
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    completed = subprocess.run(
        [
            str(postgres_bin_dir() / "pgbench"),
            "--no-vacuum",
            f"--client={CONCURRENCY}",
            "--jobs=2",
            f"--time={max(1, round(duration))}",
            f"--file={script}",
            f"--host={parts.hostname}",
            f"--port={parts.port}",
            f"--username={parts.username}",
            (parts.path or "/").lstrip("/"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", completed.stdout)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed: {completed.stdout}\n{completed.stderr}")
    return float(match.group(1))


async def run(report: Report, duration: float) -> None:
    """Both PostgreSQL set-ups: durable (fsync on, what production runs: every commit
    waits for the WAL flush, which coalescing amortizes) and fsync off (CPU bound: the
    Python gRPC path against C pgbench)."""
    for durable in (True, False):
        await _scenario(report, duration, durable=durable)


async def _scenario(report: Report, duration: float, *, durable: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenpo-bench-inventory-"))
    label = "durable" if durable else "fsync off"
    workers = os.environ.get("BENCH_INVENTORY_BATCH_WORKERS", "2")
    try:
        await _measure(report, duration, root, durable=durable, label=label, workers=workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _measure(
    report: Report, duration: float, root: Path, *, durable: bool, label: str, workers: str
) -> None:
    processes = os.environ.get("BENCH_INVENTORY_PROCESSES", "1")
    with (
        EmbeddedPostgres(root / "pg", free_port(), durable=durable) as postgres,
        EmbeddedNats(root / "nats", free_port()) as nats,
    ):
        url = postgres.ensure_database("inventory", secrets.token_urlsafe(12))
        await _prepare(url)
        keys = ensure_dev_keys(root / "keys")
        token = mint_token(
            keys.private_key_pem,
            keys.kid,
            subject="order-service",
            kind="service",
            issuer=ISSUER,
            audience=AUDIENCE,
            scopes=["inventory:reserve"],
        )
        port = free_port()
        env = {
            "INVENTORY_DATABASE_URL": url,
            "INVENTORY_GRPC_PORT": str(port),
            "INVENTORY_NATS_URL": nats.url,
            "INVENTORY_MIGRATE_ON_START": "false",
            "INVENTORY_LOG_LEVEL": "WARNING",
            "INVENTORY_REQUIRE_KNOWN_SKUS": "false",
            "INVENTORY_RESERVE_BATCH_WORKERS": workers,
            "INVENTORY_WORKERS": processes,
            "INVENTORY_AUTH_JWKS_FILE": str(keys.jwks_path),
            "INVENTORY_AUTH_ISSUER": ISSUER,
            "INVENTORY_AUTH_AUDIENCE": AUDIENCE,
            "INVENTORY_DATABASE_POOL_SIZE": "8",
        }
        with subprocess_server(["-m", "services.inventory", "serve"], env):
            channels = [
                grpc.aio.insecure_channel(
                    f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
                )
                for _ in range(CONNECTIONS)
            ]
            try:
                for channel in channels:
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=60
                    )
                stubs = [inventory_service_pb2_grpc.InventoryServiceStub(c) for c in channels]
                metadata = (("authorization", f"Bearer {token}"),)
                line = pb.StockLine(sku=HOT_SKU, quantity=1, location_id=GRPC_LOCATION)
                # Every round numbers its calls from 0: a fresh prefix keeps each call a new
                # reservation, not a replay of an earlier round's request_id.
                run_id = [""]

                def reserve(i: int) -> object:
                    return stubs[i % CONNECTIONS].ReserveStock(
                        api.ReserveStockRequest(
                            owner=f"carts/bench-{i}", lines=[line], request_id=f"{run_id[0]}-{i}"
                        ),
                        metadata=metadata,
                    )

                ceiling_request = api.GetLocationRequest(id=GRPC_LOCATION)
                ceiling = report.add(
                    await measure(
                        f"inventory: GetLocation, cached, no SQL ({label})",
                        lambda i: stubs[i % CONNECTIONS].GetLocation(
                            ceiling_request, metadata=metadata
                        ),
                        concurrency=CONCURRENCY,
                        duration=duration,
                    )
                )
                # The gRPC run and pgbench alternate, and each side keeps its median round:
                # the disk's flush latency drifts over a minute on a shared machine, and
                # alternating puts both sides under the same drift.
                runs: list[Measurement] = []
                baselines: list[float] = []
                for n in range(ROUNDS):
                    run_id[0] = secrets.token_hex(4)
                    runs.append(
                        await measure(
                            f"inventory: ReserveStock hot SKU, gRPC ({label})",
                            reserve,  # type: ignore[arg-type]
                            concurrency=CONCURRENCY,
                            duration=duration,
                        )
                    )
                    baselines.append(await asyncio.to_thread(_pgbench, url, root, duration))
                    print(
                        f"    round {n + 1}: gRPC {runs[-1].throughput:.0f}/s,"
                        f" pgbench {baselines[-1]:.0f}/s",
                        flush=True,
                    )
                reserved = report.add(sorted(runs, key=lambda m: m.throughput)[ROUNDS // 2])
                raw = sorted(baselines)[ROUNDS // 2]
            finally:
                for channel in channels:
                    await channel.close()
        print(
            f"  {'pgbench: hot-row conditional UPDATE (' + label + ')':<48} {raw:>10.1f}/s"
            f"  ({CONCURRENCY} clients)",
            flush=True,
        )
        report.note(
            f"inventory: pgbench hot-row UPDATE baseline ({label}) {raw:.0f} tps at {CONCURRENCY}"
        )
        level_reserved, held, on_hand, batches = await _oversold(url)
        oversold = max(0, level_reserved - on_hand)
        report.note(
            f"inventory: after the gRPC run reserved={level_reserved}, in active reservations="
            f"{held}, on hand={on_hand}: oversold {oversold}, "
            f"{'consistent' if held == level_reserved else 'INCONSISTENT'};"
            f" {held / max(1, batches):.1f} reservations per transaction on average"
            f" (postgres {label}, {processes} server process(es),"
            f" {workers} batch workers each)"
        )
        report.ratio(
            f"inventory ReserveStock / GetLocation, same server ({label})",
            reserved.throughput,
            ceiling.throughput,
            "what the reservation path costs over the server's floor",
        )
        report.ratio(
            f"inventory ReserveStock gRPC / pgbench hot row ({label})",
            reserved.throughput,
            raw,
            "goal >= 1.00, zero oversold",
        )
        if oversold or held != level_reserved:
            raise SystemExit("inventory benchmark: stock was oversold or reservations disagree")


if __name__ == "__main__":
    sys.exit("run through `make bench`")
