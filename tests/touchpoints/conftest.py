"""Touchpoint test fixtures: the whole development stack (`make run`'s runner, every service
seeded, in a scratch data directory on free ports) once per session, and pages opened in
Debian's chromium through Playwright, each test in fresh browser contexts, screenshots kept
under the test output directory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.gateway.config import DEV_PUBLISHABLE_KEYS
from tests.services.gateway.test_docs import _chromium
from tests.stack import whole_stack

# Live updates (server-sent events) and whole checkouts cross several services: on a
# machine busy with other test workers they take longer than Playwright's 5 s default.
expect.set_options(timeout=20_000)

ROOT = Path(__file__).resolve().parents[2]
WEB_KEY = next(k for k, v in DEV_PUBLISHABLE_KEYS.items() if v == "WEB")
#: Screenshots for a reviewer: ``.test-output/screenshots/`` (git-ignored), or under
#: ``$TENPO_TEST_OUTPUT``.
OUTPUT = Path(os.environ.get("TENPO_TEST_OUTPUT") or ROOT / ".test-output") / "screenshots"
PASSWORD = "touchpoint-test-2026"
STORE = "tokyo-shibuya"
#: A JAN of the demo catalog: leather sneakers (red), size 25.0, stocked in Shibuya.
JAN = "4912345001078"
SKU = "SNK-0306-250"

#: Every touchpoint test module's marks: a real browser and servers, and room for the
#: stack's start-up (migrations and seeds of every service) before the first one.
TOUCHPOINT_MARKS = [pytest.mark.integration, pytest.mark.timeout(900)]


@dataclass
class Stack:
    base_url: str
    data_dir: Path
    staff_token: str
    credentials: dict[str, Any]

    def device(self, kind: str, store: str = STORE) -> dict[str, str]:
        return next(
            d for d in self.credentials["devices"] if d["kind"] == kind and d["store_id"] == store
        )

    def staff(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self.staff_token}"},
            timeout=30,
        )

    def register(self, family: str = "試験", given: str = "花子") -> str:
        """A new customer of this test's own (the seeds' customers are shared); her e-mail."""
        email = f"touch.{uuid.uuid4().hex[:10]}@example.jp"
        response = httpx.post(
            f"{self.base_url}/v1/identity:register",
            json={
                "email": email,
                "password": PASSWORD,
                "name": {"familyName": family, "givenName": given},
            },
            headers={"x-api-key": WEB_KEY},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return email


def _running_stack(url: str, data_dir: Path) -> Stack:
    return Stack(
        base_url=url.rstrip("/"),
        data_dir=data_dir,
        staff_token=(data_dir / "dev-staff-token").read_text().strip(),
        credentials=json.loads((data_dir / "dev-credentials.json").read_text()),
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Against a stack that runs already (`make run`: TENPO_TOUCHPOINTS_URL=http://127.0.0.1:8080
    # TENPO_TOUCHPOINTS_DATA_DIR=.data), for quick rounds while working on the pages.
    url = os.environ.get("TENPO_TOUCHPOINTS_URL")
    if url:
        yield _running_stack(url, Path(os.environ.get("TENPO_TOUCHPOINTS_DATA_DIR", ".data")))
        return
    with whole_stack("tenpo-test-touchpoints-") as (url, data_dir):
        yield _running_stack(url, data_dir)


@dataclass
class Pages:
    """Browser contexts of one test (a kiosk and a phone are two), with what went wrong."""

    browser: Browser
    base_url: str
    name: str
    problems: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    _contexts: list[BrowserContext] = field(default_factory=list)

    async def open(self, path: str) -> Page:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        self._contexts.append(context)
        gateway = httpx.URL(self.base_url).netloc.decode()

        async def only_the_gateway(route: Any) -> None:
            # The pages use the gateway's API only: anything else is refused and reported.
            if httpx.URL(route.request.url).netloc.decode() == gateway:
                await route.continue_()
            else:
                self.outside.append(route.request.url)
                await route.abort("internetdisconnected")

        await context.route("**/*", only_the_gateway)
        page = await context.new_page()
        page.on(
            "console",
            lambda m: self.problems.append(m.text) if m.type in ("error", "warning") else None,
        )
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        await page.goto(f"{self.base_url}{path}", wait_until="load")
        return page

    async def screenshot(self, page: Page, label: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{self.name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    def expected_problem(self, pattern: str) -> None:
        """Drop the console lines a test provoked on purpose."""
        self.problems[:] = [p for p in self.problems if not re.search(pattern, p)]


@pytest.fixture
async def pages(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Pages]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=_chromium())
        found = Pages(browser, stack.base_url, request.node.name.removeprefix("test_"))
        try:
            yield found
        finally:
            with contextlib.suppress(Exception):
                await browser.close()
    # Every page stayed on the gateway and logged no error (a failed call is logged as a
    # warning by the pages, a CSP violation as an error).
    assert found.outside == []
    assert found.problems == []
