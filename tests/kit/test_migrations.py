"""Migrations: several `migrate` processes at once (a rollout's init containers, an HPA
adding pods) against one database all succeed, and the schema ends at head exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Every service with Alembic migrations: they all run through the kit's runner.
SERVICES = sorted(p.parent.parent.name for p in (ROOT / "services").glob("*/migrations/env.py"))
MIGRATORS = 3


def _migrate_at_once(service: str, database_url: str) -> list[subprocess.CompletedProcess[str]]:
    """Start MIGRATORS `python -m services.<service> migrate` processes together and wait
    for all of them."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENPO_", f"{service.upper()}_"))
    }
    env[f"{service.upper()}_DATABASE_URL"] = database_url
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", f"services.{service}", "migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(MIGRATORS)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        results.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    return results


@pytest.mark.parametrize("service", SERVICES)
async def test_concurrent_migrators_all_succeed_once(service: str, database_url: str) -> None:
    results = await asyncio.to_thread(_migrate_at_once, service, database_url)
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        versions = await connection.fetch("SELECT version_num FROM alembic_version")
        heads = {
            path.stem.split("_", 1)[0]
            for path in (ROOT / "services" / service / "migrations" / "versions").glob("*.py")
        }
        # One row, at the newest revision (revisions are numbered 0001, 0002, ...).
        assert len(versions) == 1
        assert versions[0]["version_num"].startswith(max(heads))
        outbox = await connection.fetchval("SELECT to_regclass('outbox')::text")
        assert outbox == "outbox"
    finally:
        await connection.close()
