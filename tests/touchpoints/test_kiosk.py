"""The kiosk in a real browser against the whole stack: bound to its store by its device
credentials, a JAN scanned, this store's stock live, and "continue my cart": the code shown on
the kiosk approved in the web shop (the phone), her cart then on the kiosk."""

from __future__ import annotations

import re

from playwright.async_api import expect

from services.gateway.config import EXAMPLES_DIR
from tests.touchpoints.conftest import (
    JAN,
    PASSWORD,
    SKU,
    STORE,
    TOUCHPOINT_MARKS,
    Pages,
    Stack,
)

pytestmark = TOUCHPOINT_MARKS


async def test_scan_stock_here_live_and_continue_my_cart(stack: Stack, pages: Pages) -> None:
    assert (EXAMPLES_DIR / "vendor" / "qrcode.mjs").is_file(), "run `make examples` (npm)"
    device = stack.device("KIOSK")
    kiosk = await pages.open("/examples/kiosk/")
    await kiosk.fill("#client-id", device["client_id"])
    await kiosk.fill("#client-secret", device["client_secret"])
    await kiosk.click("#setup-form button")
    await expect(kiosk.locator("#store-name")).to_have_text("みなと屋 渋谷店")
    assert await kiosk.locator("#client-secret").input_value() == ""  # not kept

    await kiosk.fill("#code", JAN)
    await kiosk.click("#scan button")
    await expect(kiosk.locator("#sku")).to_have_value(SKU)
    here = kiosk.locator("#here")
    await expect(here).not_to_have_text("—")
    with stack.staff() as staff:
        level = staff.get("/v1/availability", params={"skus": SKU, "locationIds": STORE}).json()
        before = int(level["availabilities"][0]["locations"][0].get("availableToPromise", 0))
        await expect(here).to_have_text(str(before))
        # Two pairs damaged in this store: the kiosk shows it without a reload.
        adjusted = staff.post(
            f"/v1/locations/{STORE}/stockLevels/{SKU}:adjust",
            json={"quantity": -2, "reason": "MOVEMENT_REASON_DAMAGE"},
        )
        assert adjusted.status_code == 200, adjusted.text
    await expect(here).to_have_text(str(before - 2), timeout=20_000)
    await expect(kiosk.locator("#nearby li").first).to_be_visible()
    await pages.screenshot(kiosk, "scanned")

    # Her cart, begun on the phone (the web shop as the phone).
    email = stack.register(given="結衣")
    phone = await pages.open("/examples/shop/")
    await phone.fill("#email", email)
    await phone.fill("#password", PASSWORD)
    await phone.click("#sign-in button")
    await expect(phone.locator("#signed-in")).to_be_visible()
    await phone.fill("#query", "Leather Sneakers")
    await phone.select_option("#language", "en")
    await phone.click("#search button")
    await phone.locator("#results li a", has_text="Leather Sneakers (Red)").first.click()
    await phone.select_option("#sku", SKU)
    await phone.click("#add")
    await expect(phone.locator("#cart-total")).to_have_attribute("data-lines", "1")
    cart_total = await phone.locator("#cart-total").inner_text()

    # The kiosk shows a code; she approves it on the phone; the kiosk has her cart.
    await kiosk.click("#handoff")
    code = kiosk.locator("#user-code")
    await expect(code).to_have_text(re.compile(r"^[A-Z]{4}-[A-Z]{4}$"))
    payload = kiosk.locator("#qr-payload")
    await expect(payload).to_have_text(f"tenpo://handoff?code={await code.inner_text()}")
    # The QR image of that payload, drawn by the pinned encoder (`make examples` fetches it).
    qr = kiosk.locator("#qr img")
    await expect(qr).to_have_attribute("data-payload", await payload.inner_text())
    assert (await qr.get_attribute("src") or "").startswith("data:image/gif;base64,")
    await pages.screenshot(kiosk, "handoff-code")
    await phone.fill("#user-code", await code.inner_text())
    await phone.click("#approve button")
    await expect(phone.locator("#approved")).to_contain_text("tokyo-shibuya-kiosk-1")
    await expect(kiosk.locator("#customer-cart")).to_be_visible(timeout=20_000)
    await expect(kiosk.locator("#cart-lines li")).to_have_count(1)
    await expect(kiosk.locator("#cart-lines li")).to_contain_text(SKU)
    await expect(kiosk.locator("#cart-total")).to_have_text(cart_total)
    await pages.screenshot(kiosk, "her-cart")

    # Added on the kiosk: the same cart, seen on the phone after a reload.
    await kiosk.click("#add")
    await expect(kiosk.locator("#cart-lines li")).to_contain_text("× 2")
    await phone.reload()
    await expect(phone.locator("#cart-total")).to_have_attribute("data-lines", "2")
    await pages.screenshot(phone, "phone")
