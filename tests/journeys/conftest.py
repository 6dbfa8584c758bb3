"""Journey test fixtures: one whole development stack (`make run`'s runner, every service
seeded, in a scratch data directory on this worker's quiet ports) for the session, with the
timers of the timed journeys short — the welcome reminder's wait, cart abandonment, the
birthday and segment sweep, the lapse — and no
quiet hours (a run at night in Tokyo would otherwise defer marketing SMS to 09:00)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenpo.devtools.demo.world import Narrator, Shop
from tests.stack import whole_stack

#: Every journey test module's marks: servers, and room for the stack's start-up.
#: In a full parallel run on a busy 2-core machine the start-up alone took over 600 s once
#: (every service's migrations at about a minute each).
JOURNEY_MARKS = [pytest.mark.integration, pytest.mark.timeout(1500)]
#: The journeys' short timers (seconds), and room for a busy machine.
TIMERS = {
    "NOTIFICATION_WELCOME_REMINDER_AFTER_SECONDS": "8",
    "NOTIFICATION_QUIET_HOURS_START": "00:00",
    "NOTIFICATION_QUIET_HOURS_END": "00:00",
    "CART_ABANDON_AFTER_SECONDS": "8",
    "CART_SWEEP_INTERVAL_SECONDS": "2",
    # Birthdays and time-driven segments are found within seconds; a customer lapses 30 s
    # after her last order (journey 8's offer), and two orders make her loyal.
    "CUSTOMER_ENGAGEMENT_SWEEP_INTERVAL_SECONDS": "2",
    "CUSTOMER_SEGMENT_LAPSED_AFTER_DAYS": str(30 / 86400),
    "CUSTOMER_SEGMENT_LOYAL_MIN_ORDERS": "2",
    # The journeys' shoppers get several marketing mails within minutes (thank-you, campaign,
    # review, offer): the default cap of 2 a day would skip the later ones.
    "NOTIFICATION_DAILY_MARKETING_CAP": "10",
    # Every journey signs people and devices in from this one address.
    "GATEWAY_SIGN_IN_RATE": "50",
    "GATEWAY_SIGN_IN_BURST": "500",
    # A sign-up hashes its password (argon2): on a machine busy with other test workers it
    # took longer than the gateway's 5 s once (504 BACKEND_TIMEOUT).
    "GATEWAY_BACKEND_TIMEOUT_SECONDS": "30",
}


@pytest.fixture(scope="session")
def journey_stack() -> Iterator[tuple[str, Path]]:
    """(gateway URL, data directory) of the stack the journeys run against."""
    # Against a stack that runs already (started with TIMERS), for quick rounds:
    # TENPO_JOURNEYS_URL=http://127.0.0.1:8080 TENPO_JOURNEYS_DATA_DIR=.data
    url = os.environ.get("TENPO_JOURNEYS_URL")
    if url:
        yield url, Path(os.environ.get("TENPO_JOURNEYS_DATA_DIR", ".data"))
        return
    with whole_stack("tenpo-test-journeys-", TIMERS, start_timeout=1200) as (url, data_dir):
        yield url, data_dir


@pytest.fixture
def shop(journey_stack: tuple[str, Path]) -> Iterator[Shop]:
    """The stack as the touchpoints see it; the narration goes to the test's output."""
    url, data_dir = journey_stack
    credentials = json.loads((data_dir / "dev-credentials.json").read_text(encoding="utf-8"))
    found = Shop(url, credentials, data_dir, Narrator())
    try:
        yield found
    finally:
        found.close()
