"""``/docs`` in a real browser: Debian's chromium driven by Playwright, every request to
anything but the gateway itself refused, the page must render the operations from the
gateway's own files under its own CSP. `make test` installs chromium when it is missing;
without one this test fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Route, async_playwright

from services.gateway.docs import DOCS_CSP
from tests.services.gateway.conftest import GatewayFactory

#: Any installed chromium will do; Playwright's own browser downloads are not used.
CHROMIUM = os.environ.get("TENPO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _chromium() -> str:
    assert Path(CHROMIUM).exists(), (
        f"no chromium at {CHROMIUM}: `make test` installs Debian's chromium as root "
        "(apt-get install chromium), or set TENPO_CHROMIUM"
    )
    return CHROMIUM


# A real browser is a program outside Python: not part of `make test-unit`.
@pytest.mark.integration
async def test_docs_render_the_operations_offline(start_gateway: GatewayFactory) -> None:
    # A target is enough for routes; the backend is never called by the page.
    async with start_gateway(targets={"catalog": "127.0.0.1:9"}) as gw:
        page_response = await gw.client.get("/docs")
        assert page_response.headers["content-security-policy"] == DOCS_CSP.decode()
        assert "cdn" not in page_response.text
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=_chromium())
            try:
                context = await browser.new_context()
                outside: list[str] = []

                gateway = urlsplit(gw.base_url).netloc

                async def only_the_gateway(route: Route) -> None:
                    # data: URIs never reach a route; anything else must be the gateway.
                    if urlsplit(route.request.url).netloc == gateway:
                        await route.continue_()
                    else:
                        outside.append(route.request.url)
                        await route.abort("internetdisconnected")

                await context.route("**/*", only_the_gateway)
                page = await context.new_page()
                problems: list[str] = []
                page.on(
                    "console",
                    lambda message: (
                        problems.append(message.text) if message.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda error: problems.append(str(error)))
                await page.goto(f"{gw.base_url}/docs", wait_until="load")
                # The operation list: one block per operation, tagged by service.
                get_product = page.locator("#operations-CatalogService-GetProduct")
                await get_product.wait_for(state="visible", timeout=30_000)
                assert "/v1/products/{id}" in await get_product.inner_text()
                operations = await page.locator(".opblock").count()
                title = await page.locator(".info .title").inner_text()
            finally:
                await browser.close()
    assert operations >= 10
    assert "Tenpo API" in title
    assert outside == []  # nothing was fetched from outside the gateway
    # No script error, no CSP violation (they are reported on the console).
    assert problems == []


async def test_assets_are_served_from_the_wheel_only(start_gateway: GatewayFactory) -> None:
    async with start_gateway() as gw:
        page = (await gw.client.get("/docs")).text
        bundle_path = next(
            part.split('"')[1] for part in page.split("<script")[1:] if "bundle" in part
        )
        bundle = await gw.client.get(f"/{bundle_path}")
        init = await gw.client.get(f"/{bundle_path.replace('swagger-ui-bundle.js', 'init.js')}")
        missing = await gw.client.get("/docs/assets/0.0.0/swagger-ui-bundle.js")
        folder = bundle.url.path.removesuffix("swagger-ui-bundle.js")
        escape = await gw.client.get(f"{folder}..%2FLICENSE")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "immutable" in bundle.headers["cache-control"]
    assert b"SwaggerUIBundle" in bundle.content
    assert init.status_code == 200
    assert b'url: "openapi.json"' in init.content
    assert missing.status_code == 404
    assert escape.status_code == 404
