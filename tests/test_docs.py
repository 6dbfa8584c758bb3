"""The repository explains itself: its documents link only to files inside it (nothing
outside the checkout, such as a team's shared notes), every relative link and anchor resolves,
and the root README stays a short entry point that leads to the rest."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Generated, installed or local-only trees: not part of what the repository says.
SKIPPED = {".git", ".venv", ".tools", ".data", "node_modules", ".mypy_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".md", ".py", ".toml", ".yaml", ".yml", ".proto", ".cfg", ".txt"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _files(suffixes: set[str]) -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if set(relative.parts) & SKIPPED or relative.parts[:2] == ("libs", "protos"):
            continue
        if path.is_file() and (path.suffix in suffixes or path.name in {"Makefile", "Dockerfile"}):
            found.append(path)
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    lines = markdown.read_text(encoding="utf-8").splitlines()
    return {_slug(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


def test_nothing_points_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _files(TEXT_SUFFIXES)
        if path != Path(__file__).resolve()
        and re.search(
            r"\.\./shared|shared/ARCHITECTURE\.md|shared/STYLE\.md", path.read_text("utf-8")
        )
    ]
    assert offenders == []


def test_every_relative_link_and_anchor_resolves() -> None:
    markdown = _files({".md"})
    assert ROOT / "docs" / "architecture.md" in markdown
    broken = []
    for document in markdown:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path_part, _, anchor = target.partition("#")
            resolved = (document.parent / path_part).resolve() if path_part else document
            if not resolved.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_root_readme_is_short_and_leads_everywhere() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 100
    links = set(LINK.findall(readme))
    expected = {
        "docs/architecture.md",
        "docs/development.md",
        "bench/README.md",
        "deploy/README.md",
        "libs/kit/README.md",
    }
    expected |= {str(path.relative_to(ROOT)) for path in (ROOT / "services").glob("*/README.md")}
    assert expected <= links, expected - links
    # Benchmark tables live in bench/README.md, not here.
    assert "| suite |" not in readme
    assert "| suite |" in (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
