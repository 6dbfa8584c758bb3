"""The floor of any mutation that persists: the bare grpc.aio health server of
``bench.bare_health`` whose ``Check`` also writes one row to PostgreSQL (one single-statement
transaction on a pooled asyncpg connection) — no kit, no protobuf of its own, no logic. The
client pays exactly what it pays for the bare ``Check``, so the ratio of the two is the best
any service RPC that writes one row could reach on the same machine."""

from __future__ import annotations

import asyncio
import itertools
import sys

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

#: One row per client worker, as a cart per shopper (concurrent writers never wait on a lock).
ROWS = 32


async def prepare(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id int PRIMARY KEY, version bigint NOT NULL, "
            "touched timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute(
            "INSERT INTO bench_floor (id, version) SELECT g, 0 FROM generate_series(0, $1) g "
            "ON CONFLICT DO NOTHING",
            ROWS - 1,
        )
    finally:
        await connection.close()


class WritingHealth(health.aio.HealthServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__()
        self._pool = pool
        self._next = itertools.count()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        row = next(self._next) % ROWS
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE bench_floor SET version = version + 1, touched = now() WHERE id = $1", row
            )
        return await super().Check(request, context)


async def serve(port: int, dsn: str) -> None:
    await prepare(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=ROWS, max_size=ROWS)
    server = grpc.aio.server()
    servicer = WritingHealth(pool)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
