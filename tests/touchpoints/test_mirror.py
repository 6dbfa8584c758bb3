"""The smart mirror in a real browser against the whole stack: a tag read, the try-on recorded
(anonymous on the device's own token, hers once she handed her session over), sizes and
suggestions in what this store has, and bought on the spot."""

from __future__ import annotations

import re

from playwright.async_api import expect

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


async def test_try_on_suggestions_and_buy_on_the_spot(stack: Stack, pages: Pages) -> None:
    device = stack.device("SMART_MIRROR")
    mirror = await pages.open("/examples/mirror/")
    await mirror.fill("#client-id", device["client_id"])
    await mirror.fill("#client-secret", device["client_secret"])
    await mirror.click("#setup-form button")
    await expect(mirror.locator("#store-name")).to_have_text("みなと屋 渋谷店")

    await mirror.fill("#tag", JAN)
    await mirror.click("#tag-form button")
    await expect(mirror.locator("#try-on")).to_have_text(f"Try-on recorded: {SKU}")
    await expect(mirror.locator("#title")).to_have_text(
        "レザースニーカー（レッド） / Leather Sneakers (Red)"
    )
    # Sizes: what Shibuya holds, as the inventory says.
    with stack.staff() as staff:
        skus = [f"SNK-0306-{size}" for size in (240, 250, 260, 270, 280)]
        found = staff.get("/v1/availability", params={"skus": skus, "locationIds": STORE}).json()
    here = {
        a["sku"]: int(a["locations"][0].get("availableToPromise", 0))
        for a in found["availabilities"]
    }
    for sku, units in here.items():
        expected = f"{units} here" if units > 0 else "not here"
        await expect(mirror.locator(f"#sizes li[data-sku='{sku}']")).to_contain_text(expected)
    # Suggestions (the catalog's related products) say which sizes this store has; which
    # of them have stock here depends on how far the demo stocking has got.
    await expect(mirror.locator("#suggestions li").first).to_contain_text(
        re.compile("sizes here: |none here")
    )
    await pages.screenshot(mirror, "recognised")

    # She hands her session to the mirror from her phone; the next try-on is hers.
    email = stack.register(given="美咲")
    await mirror.click("#handoff")
    code = mirror.locator("#user-code")
    await expect(code).not_to_be_empty()
    phone = await pages.open("/examples/shop/")
    await phone.fill("#email", email)
    await phone.fill("#password", PASSWORD)
    await phone.click("#sign-in button")
    await phone.fill("#user-code", await code.inner_text())
    await phone.click("#approve button")
    await expect(phone.locator("#approved")).to_contain_text("tokyo-shibuya-mirror-1")
    await expect(mirror.locator("#buy")).to_be_visible(timeout=20_000)
    await mirror.click("#tag-form button")
    await expect(mirror.locator("#try-on")).to_contain_text("recorded for you")

    # Bought on the spot: carry-out is handed over at once, so the order may already be
    # completed when the page shows it.
    await mirror.click("#carry-out")
    await expect(mirror.locator("#order")).to_have_attribute(
        "data-status", re.compile("ORDER_STATUS_(PLACED|COMPLETED)"), timeout=30_000
    )
    await pages.screenshot(mirror, "bought")
    with stack.staff() as staff:
        customer = staff.get("/v1/customers:search", params={"email": email}).json()
        customer_id = customer["customers"][0]["id"]
        timeline = staff.get(f"/v1/customers/{customer_id}/interactions").json()
        orders = staff.get("/v1/orders", params={"customerId": customer_id}).json()
    try_ons = [i for i in timeline["interactions"] if i["kind"] == "INTERACTION_KIND_MIRROR_TRY_ON"]
    # The try-on recorded before she handed off is hers now too (linked at the hand-off).
    assert try_ons
    assert {(i["sku"], i["storeId"], i["channel"]) for i in try_ons} == {
        (SKU, STORE, "CHANNEL_SMART_MIRROR")
    }
    [order] = orders["orders"]
    assert order["channel"] == "CHANNEL_SMART_MIRROR"
    assert order["fulfillment"] == {"method": "FULFILLMENT_METHOD_CARRY_OUT", "storeId": STORE}
    assert [line["sku"] for line in order["lines"]] == [SKU]
