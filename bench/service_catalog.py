"""Catalog benchmarks: GetProduct vs the bare health Check, and search latency on 10,000
products."""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import Report, free_port, interleaved, measure, subprocess_server
from bench.kit import BASELINE, CONCURRENCY, bare_health_server
from bench.service_cart import CpuMeter
from services.catalog import domain as d
from services.catalog.app import definition
from services.catalog.seed import jan_code, seed_demo_catalog
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.devtools.stack import EmbeddedNats, EmbeddedPostgres
from tenpo.kit import migrations
from tenpo.kit.db import Database

PRODUCTS = 10_000
#: Sizes the search is measured at after the first (BENCH_CATALOG_SIZES, comma-separated;
#: empty for none).
LARGER_CATALOGS = [
    int(n) for n in os.environ.get("BENCH_CATALOG_SIZES", "100000").split(",") if n.strip()
]
ADJECTIVES = [
    ("軽量", "lightweight"),
    ("防水", "waterproof"),
    ("ヴィンテージ", "vintage"),
    ("オーバーサイズ", "oversized"),
    ("スリム", "slim"),
    ("ストレッチ", "stretch"),
    ("リサイクル素材の", "recycled"),
    ("和紙混", "washi-blend"),
    ("ふわふわ", "fluffy"),
]
NOUNS = [
    ("スニーカー", "sneakers"),
    ("ブーツ", "boots"),
    ("Tシャツ", "t-shirt"),
    ("シャツ", "shirt"),
    ("カーディガン", "cardigan"),
    ("ジャケット", "jacket"),
    ("デニム", "jeans"),
    ("スカート", "skirt"),
    ("ワンピース", "dress"),
    ("帽子", "hat"),
    ("手袋", "gloves"),
    ("マフラー", "scarf"),
]
COLORS = [("白", "white"), ("黒", "black"), ("紺", "navy"), ("赤", "red"), ("緑", "green")]
QUERIES_JA = ["スニーカー", "防水 ブーツ", "ふわふわ", "紺 ジャケット", "ワンピース", "すにーかー"]
QUERIES_EN = ["sneakers", "waterproof boots", "vintage", "navy jacket", "dress", "slim jeans"]


def generated_products(count: int, first: int = 0) -> Iterator[d.Product]:
    """``count`` generated products (numbered from ``first``), the same every run."""
    rng = random.Random(7 + first)
    now = datetime.now(UTC)
    numbers = itertools.count(50_000 + 3 * first)
    for n in range(first, first + count):
        adjective, noun, color = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(COLORS)
        code = f"GEN-{n:06d}"
        yield d.Product(
            id=uuid.uuid4(),
            code=code,
            titles={
                "ja": f"{adjective[0]}{noun[0]}（{color[0]}）",
                "en": f"{adjective[1]} {noun[1]} ({color[1]})",
            },
            descriptions={
                "ja": f"{adjective[0]}の{noun[0]}です。",
                "en": f"A {adjective[1]} {noun[1]}.",
            },
            brand=f"Brand {n % 40}",
            status=d.ProductStatus.PUBLISHED,
            channels=frozenset({1, 2, 3, 4, 5, 6}),
            variants=tuple(
                d.Variant(
                    f"{code}-{s}",
                    {"color": color[1], "size": s},
                    (d.Barcode(d.BarcodeType.JAN, jan_code(next(numbers))),),
                )
                for s in ("S", "M", "L")
            ),
            created_at=now,
            updated_at=now,
            published_at=now,
        )


async def load_products(database_url: str, count: int, first: int = 0) -> list[str]:
    """Bulk-load generated products with COPY (100,000 in well under a minute on an idle
    machine, where the store's per-product statements take many minutes). The rows are the
    store's own (search text and facet tokens from the domain), as ``ProductStore.save``
    writes them; no events and no prices, which search does not need."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    ids: list[str] = []
    try:
        for start in range(first, first + count, 10_000):
            batch = list(generated_products(min(10_000, first + count - start), start))
            ids.extend(str(p.id) for p in batch)
            product_rows = [
                (
                    p.id,
                    p.code,
                    json.dumps(dict(p.titles)),
                    json.dumps(dict(p.descriptions)),
                    p.brand,
                    int(p.status),
                    sorted(p.channels),
                    int(p.tax_class),
                    "[]",
                    "[]",
                    p.version,
                    p.created_at,
                    p.updated_at,
                    p.published_at,
                    p.search_text([]),
                    p.search_title(),
                    p.facet_tokens(),
                )
                for p in batch
            ]
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "products",
                    records=product_rows,
                    columns=[
                        "id",
                        "code",
                        "titles",
                        "descriptions",
                        "brand",
                        "status",
                        "channels",
                        "tax_class",
                        "attributes",
                        "media",
                        "version",
                        "created_at",
                        "updated_at",
                        "published_at",
                        "search_text",
                        "search_title",
                        "facet_tokens",
                    ],
                )
                await connection.copy_records_to_table(
                    "variants",
                    records=[
                        (v.sku, p.id, i, json.dumps(dict(v.options)), "[]")
                        for p in batch
                        for i, v in enumerate(p.variants)
                    ],
                    columns=["sku", "product_id", "position", "options", "attributes"],
                )
                await connection.copy_records_to_table(
                    "barcodes",
                    records=[
                        (b.value, int(b.type), b.gtin, v.sku)
                        for p in batch
                        for v in p.variants
                        for b in v.barcodes
                    ],
                    columns=["value", "type", "gtin", "sku"],
                )
        await connection.execute("ANALYZE products")
    finally:
        await connection.close()
    return ids


async def run(report: Report, duration: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="tenpo-bench-catalog-"))
    with (
        EmbeddedPostgres(root / "pg", free_port(), durable=False) as postgres,
        EmbeddedNats(root / "nats", free_port()) as nats,
    ):
        url = postgres.ensure_database("catalog", secrets.token_urlsafe(12))
        await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
        started = time.perf_counter()
        seed_db = Database(url)
        await seed_demo_catalog(seed_db)
        await seed_db.dispose()
        ids = await load_products(url, PRODUCTS - 216)
        report.note(f"catalog: loaded {PRODUCTS} products in {time.perf_counter() - started:.0f} s")

        port = free_port()
        env = {
            "CATALOG_DATABASE_URL": url,
            "CATALOG_GRPC_PORT": str(port),
            "CATALOG_NATS_URL": nats.url,
            "CATALOG_MIGRATE_ON_START": "false",
            "CATALOG_LOG_LEVEL": "WARNING",
        }
        check = health_pb2.HealthCheckRequest()
        async with bare_health_server() as bare:
            with subprocess_server(["-m", "services.catalog", "serve"], env) as server:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await health_pb2_grpc.HealthStub(channel).Check(
                        check, wait_for_ready=True, timeout=300
                    )
                    stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
                    metadata = (("x-tenpo-channel", "WEB"),)
                    requests = [api.GetProductRequest(id=i) for i in ids[:200]]
                    for request in requests:  # warm the cache, as a running shop would be
                        await stub.GetProduct(request, metadata=metadata)
                    baseline, get = await interleaved(
                        [
                            (f"{BASELINE} (catalog run)", lambda _i: bare.Check(check)),
                            (
                                "catalog: GetProduct (hot, anonymous web)",
                                lambda i: stub.GetProduct(
                                    requests[i % len(requests)], metadata=metadata
                                ),
                            ),
                        ],
                        concurrency=CONCURRENCY,
                        duration=duration,
                    )
                    report.add(baseline)
                    report.add(get)
                    report.ratio(
                        "catalog GetProduct / bare grpc.aio health Check",
                        get.throughput,
                        baseline.throughput,
                        "goal >= 0.80",
                    )
                    # CPU per search (the catalog, PostgreSQL with its backends, the client):
                    # with one client that is about the latency of an idle machine, and
                    # unlike latency it hardly moves with what else the machine runs.
                    meter = CpuMeter(
                        {"catalog": server.pid, "client": os.getpid()},
                        postmaster=int(
                            (postgres.data_dir / "postmaster.pid").read_text().split()[0]
                        ),
                    )
                    await measure_search(report, stub, metadata, duration, PRODUCTS, meter)
                    for size in LARGER_CATALOGS:
                        # The same catalog grown (COPY), for a retailer with a large range.
                        started = time.perf_counter()
                        await load_products(url, size - PRODUCTS, first=PRODUCTS)
                        report.note(
                            f"catalog: grew to {size} products in "
                            f"{time.perf_counter() - started:.0f} s"
                        )
                        await measure_search(report, stub, metadata, duration, size, meter)


async def measure_search(
    report: Report,
    stub: catalog_service_pb2_grpc.CatalogServiceStub,
    metadata: tuple[tuple[str, str], ...],
    duration: float,
    size: int,
    meter: CpuMeter,
) -> None:
    for language, queries in (("ja", QUERIES_JA), ("en", QUERIES_EN)):
        search_requests = [
            api.SearchProductsRequest(query=q, page_size=24, language_code=language)
            for q in queries
        ]
        name = f"catalog: SearchProducts {size // 1000}k products ({language})"
        call = _search_caller(stub, search_requests, metadata)
        for i in range(len(search_requests)):  # warm up here: the meter counts every call
            await call(i)
        measured, cpu = await meter.per_call(
            lambda: measure(name, call, concurrency=1, duration=duration, warmup=0)  # noqa: B023
        )
        result = report.add(measured)
        goal = " (goal <= 30 ms)" if size == PRODUCTS else ""
        report.note(
            f"catalog search ({language}) p95 {result.percentile(95):.1f} ms, {size} products{goal}"
        )
        parts = ", ".join(f"{process} {ms:.1f}" for process, ms in cpu.items())
        report.note(
            f"catalog search ({language}) CPU ms per search, {size} products: {parts};"
            f" total {sum(cpu.values()):.1f}"
        )


def _search_caller(
    stub: catalog_service_pb2_grpc.CatalogServiceStub,
    requests: list[api.SearchProductsRequest],
    metadata: tuple[tuple[str, str], ...],
) -> Callable[[int], Awaitable[Any]]:
    def call(i: int) -> Awaitable[Any]:
        return cast(
            Awaitable[Any], stub.SearchProducts(requests[i % len(requests)], metadata=metadata)
        )

    return call


if __name__ == "__main__":
    sys.exit("run through `make bench`")
