"""The devstack's supervision: the watchdog's backoff on a fake clock, then `make run`'s stack
in a subprocess surviving a killed service and a killed PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import psutil
import pytest

from tenpo.devtools.stack.runner import READY_BANNER
from tenpo.devtools.stack.supervisor import Backoff, Phase, Watchdog
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc
from tests.stack import Runner, quiet_ports

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMember:
    name: str
    log_file: Path = Path("/logs/fake.log")
    alive: bool = True
    serving: bool = True
    #: Restart attempts that raise before one succeeds.
    failing_restarts: int = 0
    attempts: list[int] = field(default_factory=list)

    def exited(self) -> str | None:
        return None if self.alive else "was killed by SIGKILL"

    def restart(self, attempt: int) -> None:
        self.attempts.append(attempt)
        if self.failing_restarts:
            self.failing_restarts -= 1
            raise RuntimeError("port still taken")
        self.alive = True

    def ready(self) -> bool:
        return self.serving


def watchdog(*members: FakeMember) -> tuple[Watchdog, Clock, list[str]]:
    clock, reports = Clock(), []
    return Watchdog(members, report=reports.append, clock=clock), clock, reports


def test_backoff_doubles_up_to_its_ceiling_and_forgives_a_long_run() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, reset_after=60.0)
    assert [backoff.next_delay(ran_for=2.0) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(ran_for=60.0) == 1.0
    assert backoff.next_delay(ran_for=0.5) == 2.0


def test_a_dead_member_is_restarted_after_the_delay_and_reported_serving() -> None:
    catalog = FakeMember("catalog", serving=False)
    dog, clock, reports = watchdog(catalog)
    dog.tick()
    assert reports == []

    catalog.alive = False
    clock.now += 5
    dog.tick()
    assert dog.phase("catalog") is Phase.WAITING
    assert reports[-1] == (
        "catalog was killed by SIGKILL; restarting it in 1 s (restart 1); see /logs/fake.log"
    )
    dog.tick()  # the delay has not passed yet
    assert catalog.attempts == []

    clock.now += 1
    dog.tick()
    assert catalog.attempts == [1]
    assert dog.phase("catalog") is Phase.STARTING
    dog.tick()  # running, but not serving yet
    assert dog.phase("catalog") is Phase.STARTING

    catalog.serving = True
    clock.now += 2
    dog.tick()
    assert dog.phase("catalog") is Phase.RUNNING
    assert reports[-1].startswith("catalog is serving again (restart 1,")
    assert dog.restarts("catalog") == 1


def test_crashing_again_and_again_waits_longer_each_time() -> None:
    flaky = FakeMember("flaky")
    dog, clock, reports = watchdog(flaky)
    for _ in range(8):
        flaky.alive = False
        dog.tick()
        clock.now += 100  # long past any delay; the next crash follows the restart at once
        dog.tick()
        assert flaky.alive
    assert dog.restarts("flaky") == 8
    waits = [r.split("restarting it in ")[1].split(" s")[0] for r in reports]
    assert waits == ["1", "2", "4", "8", "16", "30", "30", "30"]


def test_a_failed_restart_is_tried_again_later_and_never_ends_the_watch() -> None:
    postgres = FakeMember("postgres", alive=False, failing_restarts=2)
    dog, clock, reports = watchdog(postgres)
    dog.tick()
    clock.now += 1
    dog.tick()
    assert postgres.attempts == [1]
    assert "postgres: restart 1 failed (port still taken); trying again in 2 s" in reports
    clock.now += 1
    dog.tick()  # too early
    assert postgres.attempts == [1]
    clock.now += 1
    dog.tick()
    assert postgres.attempts == [1, 2]
    clock.now += 4
    dog.tick()
    assert postgres.attempts == [1, 2, 3]
    assert postgres.alive
    dog.tick()
    assert dog.phase("postgres") is Phase.RUNNING


def test_a_member_that_comes_back_on_its_own_is_left_alone() -> None:
    postgres = FakeMember("postgres")
    dog, clock, reports = watchdog(postgres)
    postgres.alive = False
    dog.tick()
    postgres.alive = True  # e.g. `pg_ctl restart` by hand
    clock.now += 1
    dog.tick()
    assert postgres.attempts == []
    assert dog.phase("postgres") is Phase.RUNNING
    assert reports[-1] == "postgres is running again (it came back on its own)"


def test_members_are_handled_in_order_servers_first() -> None:
    order: list[str] = []

    class Recording(FakeMember):
        def restart(self, attempt: int) -> None:
            order.append(self.name)
            super().restart(attempt)

    postgres, catalog = Recording("postgres", alive=False), Recording("catalog", alive=False)
    dog, clock, _ = watchdog(postgres, catalog)
    dog.tick()
    clock.now += 1
    dog.tick()
    assert order == ["postgres", "catalog"]


@pytest.mark.parametrize("ran_for", [0.0, 59.0])
def test_a_short_run_keeps_the_backoff_growing(ran_for: float) -> None:
    backoff = Backoff()
    backoff.next_delay(ran_for)
    assert backoff.next_delay(ran_for) == 2.0


# -- the running stack under faults ------------------------------------------------------------


def _service_process(runner: Runner, name: str) -> psutil.Process:
    """The runner's child serving ``services.<name>``."""
    for child in psutil.Process(runner.process.pid).children():
        if child.cmdline()[-2:] == ["-m", f"services.{name}"]:
            return child
    raise AssertionError(f"no services.{name} process under the runner:\n{runner.text}")


def _eventually(call: Callable[[], T], timeout: float) -> T:
    """``call()``'s first answer that is not an RPC error, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"still failing after {timeout:.0f} s: {error}") from error
            time.sleep(0.5)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_run_restarts_a_killed_service_and_a_killed_postgres(runner_env: dict[str, str]) -> None:
    data_dir = Path(runner_env["TENPO_DATA_DIR"])
    base = quiet_ports(120)
    env = runner_env | {"TENPO_SERVICES": "inventory", "TENPO_PORT_BASE": str(base)}
    runner = Runner("run", env)
    runner.wait_for(READY_BANNER, timeout=300)
    token = (data_dir / "dev-staff-token").read_text().strip()
    channel = grpc.insecure_channel(f"127.0.0.1:{base + 2}")
    inventory = inventory_service_pb2_grpc.InventoryServiceStub(channel)

    def list_locations() -> list[str]:
        # ListLocations reads the database on every call (no cache in front of it).
        response = inventory.ListLocations(
            api.ListLocationsRequest(page_size=50),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
        return [location.id for location in response.locations]

    try:
        seeded = list_locations()
        assert seeded, "the demo seed creates locations"

        first = _service_process(runner, "inventory")
        first.kill()
        runner.wait_for("inventory was killed by SIGKILL; restarting it in", timeout=60)
        runner.wait_for("inventory is serving again (restart 1", timeout=300)
        assert _service_process(runner, "inventory").pid != first.pid
        assert _eventually(list_locations, timeout=60) == seeded

        postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        psutil.Process(postmaster).kill()
        runner.wait_for("postgres stopped; restarting it in", timeout=60)
        runner.wait_for("postgres is serving again", timeout=300)
        restarted = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        assert restarted != postmaster
        assert psutil.Process(restarted).is_running()
        # Whether or not the service fell over with it, its calls reach the new server.
        assert _eventually(list_locations, timeout=120) == seeded
    finally:
        channel.close()
        runner.process.send_signal(signal.SIGINT)
    assert runner.finish(timeout=120) == 0, runner.text
    assert "stop postgres" in runner.text
