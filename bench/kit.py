"""Kit benchmarks: the bare grpc.aio health baseline, and the same RPC through the kit's server."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import Report, free_port, measure, subprocess_server

CONCURRENCY = 32


async def health_check(target: str, name: str, report: Report, duration: float) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        await stub.Check(request, wait_for_ready=True, timeout=30)
        result = await measure(
            name, lambda _i: stub.Check(request), concurrency=CONCURRENCY, duration=duration
        )
    return report.add(result).throughput


async def baseline(report: Report, duration: float) -> float:
    """Bare grpc.aio health Check throughput: the yardstick of every service target."""
    port = free_port()
    with subprocess_server(["-m", "bench.bare_health", str(port)]):
        return await health_check(
            f"127.0.0.1:{port}", "baseline: bare grpc.aio health Check", report, duration
        )


async def run(report: Report, duration: float) -> None:
    bare = await baseline(report, duration)
    port = free_port()
    env = {"SAMPLE_GRPC_PORT": str(port), "SAMPLE_LOG_LEVEL": "WARNING"}
    with subprocess_server(["-m", "tests.kit.sample_service"], env):
        kit = await health_check(
            f"127.0.0.1:{port}", "kit server: health Check (interceptors on)", report, duration
        )
    report.ratio("kit server health Check / bare grpc.aio", kit, bare, "overhead of the kit")
