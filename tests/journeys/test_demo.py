"""`make demo`'s command against the journeys' stack: it narrates which touchpoint did what and
which message went out, and says it told them; against a gateway that is gone it exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.journeys.conftest import JOURNEY_MARKS
from tests.stack import quiet_ports

pytestmark = JOURNEY_MARKS
ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenpo.devtools.demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_demo_narrates_the_journeys(journey_stack: tuple[str, Path]) -> None:
    url, data_dir = journey_stack
    # Two journeys keep the test short: every journey is a test of its own already.
    told = _demo("--base-url", url, "--data-dir", str(data_dir), "--only", "1,2")
    assert told.returncode == 0, told.stdout + told.stderr
    out = told.stdout
    assert "Journey 1: A cart begun in the app, continued on a kiosk" in out
    assert "kiosk shibuya" in out and "shows her cart from the app" in out
    assert "Journey 2: Click & collect" in out
    assert "SMS to +81" in out and "handed over" in out
    assert "journeys told: 2 of 2; not shown: none; failed: none" in out


def test_make_demo_fails_when_the_gateway_is_gone(journey_stack: tuple[str, Path]) -> None:
    _, data_dir = journey_stack
    gone = _demo("--base-url", f"http://127.0.0.1:{quiet_ports()}", "--data-dir", str(data_dir))
    assert gone.returncode == 1
    assert "does not answer" in gone.stdout and "make run" in gone.stdout
