"""Benchmark harness: closed-loop load from one client, latency percentiles, ratio reports."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = Path(__file__).with_name("results.json")


@dataclass
class Measurement:
    name: str
    calls: int
    errors: int
    seconds: float
    concurrency: int
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    #: The first failure's text, so a run with errors says what they were.
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "concurrency": self.concurrency,
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p95_ms": round(self.percentile(95), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else 0,
        }


async def measure(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    concurrency: int = 16,
    duration: float = 3.0,
    warmup: float = 0.5,
) -> Measurement:
    """Run ``concurrency`` workers that call ``call(i)`` back to back for ``duration`` seconds
    (after a warm-up that is not counted)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    counter = 0
    recording = False
    stop_at = loop.time() + warmup + duration

    async def worker() -> None:
        nonlocal errors, counter, first_error
        while loop.time() < stop_at:
            counter += 1
            started = time.perf_counter()
            try:
                await call(counter)
            except Exception as error:
                if recording:
                    errors += 1
                    first_error = first_error or f"{type(error).__name__}: {error}"[:300]
                continue
            if recording:
                latencies.append((time.perf_counter() - started) * 1000)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    recording = True
    started = loop.time()
    await asyncio.gather(*tasks)
    elapsed = loop.time() - started
    return Measurement(name, len(latencies), errors, elapsed, concurrency, latencies, first_error)


async def interleaved(
    contenders: Sequence[tuple[str, Callable[[int], Awaitable[Any]]]],
    *,
    rounds: int = 3,
    concurrency: int = 16,
    duration: float = 3.0,
) -> list[Measurement]:
    """Measure several contenders in alternation (A, B, A, B, ...) and keep each one's
    median round: a burst of background load then hits both sides, not one."""
    results: dict[str, list[Measurement]] = {name: [] for name, _ in contenders}
    for _ in range(rounds):
        for name, call in contenders:
            results[name].append(
                await measure(name, call, concurrency=concurrency, duration=duration, warmup=0.3)
            )
    medians = []
    for name, _ in contenders:
        ordered = sorted(results[name], key=lambda m: m.throughput)
        medians.append(ordered[len(ordered) // 2])
    return medians


@dataclass
class Report:
    measurements: dict[str, Measurement] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measurement: Measurement) -> Measurement:
        self.measurements[measurement.name] = measurement
        s = measurement.summary()
        print(
            f"  {measurement.name:<48} {s['throughput_per_s']:>10.1f}/s  p50 {s['p50_ms']:>7.3f} ms"
            f"  p95 {s['p95_ms']:>7.3f} ms  errors {s['errors']}",
            flush=True,
        )
        if measurement.first_error:
            print(f"    first error: {measurement.first_error}", flush=True)
        return measurement

    def ratio(self, label: str, value: float, baseline: float, goal: str = "") -> float:
        ratio = value / baseline if baseline else 0.0
        self.ratios.append({"label": label, "ratio": round(ratio, 3), "goal": goal})
        print(f"  RATIO {label:<60} {ratio:6.2f}x  {goal}", flush=True)
        return ratio

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  NOTE  {text}", flush=True)

    def write(self) -> None:
        data = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "measurements": {k: m.summary() for k, m in self.measurements.items()},
            "ratios": self.ratios,
            "notes": self.notes,
        }
        RESULTS_FILE.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        print(f"\nresults written to {RESULTS_FILE}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc): CPU per call stays
    comparable on a machine busy with other work, where throughput ratios do not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def subprocess_server(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process, so client and server don't share one event loop."""
    process = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``seconds``."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
