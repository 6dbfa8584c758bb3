"""`make bench`: run every benchmark in one process run and print ratios."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import pkgutil
import traceback

import bench
from bench.harness import Report


def suites() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(bench.__path__)]
    return ["kit", *sorted(n for n in names if n.startswith("service_"))]


async def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--only", nargs="*", help="suites to run (default: all)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    args = parser.parse_args()
    report = Report()
    failed: list[str] = []
    for name in suites():
        if args.only and name not in args.only:
            continue
        print(f"\n== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            await module.run(report, args.duration)
        except Exception:
            # One broken suite must not hide the others' numbers.
            traceback.print_exc()
            failed.append(name)
    print("\n== ratios")
    for ratio in report.ratios:
        print(f"  {ratio['label']:<66} {ratio['ratio']:6.2f}x  {ratio['goal']}")
    report.write()
    if failed:
        raise SystemExit(f"benchmark suites failed: {', '.join(failed)}")


if __name__ == "__main__":
    asyncio.run(main())
