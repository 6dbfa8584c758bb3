"""Kit benchmarks: the bare grpc.aio health baseline, and the same RPC through the kit's server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import Report, free_port, interleaved, subprocess_server

CONCURRENCY = 32
BASELINE = "baseline: bare grpc.aio health Check"


@asynccontextmanager
async def bare_health_server() -> AsyncIterator[health_pb2_grpc.HealthStub]:
    """The yardstick every service target is expressed against: a grpc.aio server with
    nothing but the standard health service, in its own process."""
    port = free_port()
    with subprocess_server(["-m", "bench.bare_health", str(port)]):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
            yield stub


async def run(report: Report, duration: float) -> None:
    port = free_port()
    env = {"SAMPLE_GRPC_PORT": str(port), "SAMPLE_LOG_LEVEL": "WARNING"}
    request = health_pb2.HealthCheckRequest()
    async with bare_health_server() as bare:
        with subprocess_server(["-m", "tests.kit.sample_service"], env):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                kit = health_pb2_grpc.HealthStub(channel)
                await kit.Check(request, wait_for_ready=True, timeout=30)
                baseline, on_kit = await interleaved(
                    [
                        (BASELINE, lambda _i: bare.Check(request)),
                        ("kit server: health Check", lambda _i: kit.Check(request)),
                    ],
                    concurrency=CONCURRENCY,
                    duration=duration,
                )
    report.add(baseline)
    report.add(on_kit)
    report.ratio(
        "kit server health Check / bare grpc.aio", on_kit.throughput, baseline.throughput, "~1.0"
    )
