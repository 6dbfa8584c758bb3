"""Every demo page from the index: loaded in the browser under its CSP with no script error
and nothing fetched from outside the gateway."""

from __future__ import annotations

from playwright.async_api import expect

from services.gateway.examples import EXAMPLES_CSP
from tests.touchpoints.conftest import TOUCHPOINT_MARKS, Pages, Stack

pytestmark = TOUCHPOINT_MARKS

PAGES = {
    "shop/": "#search",
    "kiosk/": "#setup-form",
    "shelf/": "#setup-form",
    "mirror/": "#setup-form",
    "staff/": "#sign-in",
    "inbox/": "#token-form",
}


async def test_every_page_opens_from_the_index(stack: Stack, pages: Pages) -> None:
    index = await pages.open("/examples/")
    links = await index.locator("main a").evaluate_all("(links) => links.map((a) => a.href)")
    assert [link for link in links if "/examples/" in link] == [
        f"{stack.base_url}/examples/{path}" for path in PAGES
    ]
    await pages.screenshot(index, "index")
    for path, ready in PAGES.items():
        page = await pages.open(f"/examples/{path}")
        response = await page.request.get(f"{stack.base_url}/examples/{path}")
        assert response.headers["content-security-policy"] == EXAMPLES_CSP.decode()
        await expect(page.locator(ready)).to_be_visible()
        await pages.screenshot(page, path.strip("/"))
