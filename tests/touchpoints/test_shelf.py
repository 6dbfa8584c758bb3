"""The smart shelf in a real browser against the whole stack: a lifted pair recognised by its
RFID tag, the pick-up recorded (anonymous), its sizes in this store as the inventory says;
the same pair tried on at the mirror, and her hand-off there makes the shelf's pick-up hers."""

from __future__ import annotations

import secrets

from playwright.async_api import Page, expect

from tenpo.devtools.demo.journeys.stores import sgtin96
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


async def _device(pages: Pages, path: str, device: dict[str, str]) -> Page:
    page = await pages.open(path)
    await page.fill("#client-id", device["client_id"])
    await page.fill("#client-secret", device["client_secret"])
    await page.click("#setup-form button")
    await expect(page.locator("#store-name")).to_have_text("みなと屋 渋谷店")
    return page


async def test_a_lifted_pair_its_sizes_here_and_her_pick_up_after_the_hand_off(
    stack: Stack, pages: Pages
) -> None:
    pair = sgtin96(JAN, secrets.randbits(38))
    shelf = await _device(pages, "/examples/shelf/", stack.device("SMART_SHELF"))
    await shelf.fill("#tag", pair)
    await shelf.click("#tag-form button")
    await expect(shelf.locator("#pick-up")).to_have_text(f"Pick-up recorded: {SKU}")
    await expect(shelf.locator("#title")).to_have_text(
        "レザースニーカー（レッド） / Leather Sneakers (Red)"
    )
    with stack.staff() as staff:
        skus = [f"SNK-0306-{size}" for size in (240, 250, 260, 270, 280)]
        found = staff.get("/v1/availability", params={"skus": skus, "locationIds": STORE}).json()
    for availability in found["availabilities"]:
        units = int(availability["locations"][0].get("availableToPromise", 0))
        expected = f"{units} here" if units > 0 else "not here"
        await expect(shelf.locator(f"#sizes li[data-sku='{availability['sku']}']")).to_contain_text(
            expected
        )
    await pages.screenshot(shelf, "lifted")

    # She carries the pair to the fitting room: the mirror reads the same tag, anonymously.
    mirror = await _device(pages, "/examples/mirror/", stack.device("SMART_MIRROR"))
    await mirror.fill("#tag", pair)
    await mirror.click("#tag-form button")
    await expect(mirror.locator("#try-on")).to_have_text(f"Try-on recorded: {SKU}")
    email = stack.register(given="彩")
    await mirror.click("#handoff")
    code = mirror.locator("#user-code")
    await expect(code).not_to_be_empty()
    phone = await pages.open("/examples/shop/")
    await phone.fill("#email", email)
    await phone.fill("#password", PASSWORD)
    await phone.click("#sign-in button")
    await phone.fill("#user-code", await code.inner_text())
    await phone.click("#approve button")
    await expect(mirror.locator("#buy")).to_be_visible(timeout=20_000)

    with stack.staff() as staff:
        customer = staff.get("/v1/customers:search", params={"email": email}).json()
        customer_id = customer["customers"][0]["id"]
        timeline = staff.get(f"/v1/customers/{customer_id}/interactions").json()
    # In stores (her timeline also shows what the services did: the welcome mail, …).
    devices = ("INTERACTION_KIND_SHELF_SCAN", "INTERACTION_KIND_MIRROR_TRY_ON")
    seen = {
        (i["kind"], i.get("itemTag"), i.get("storeId"), i.get("channel"))
        for i in timeline["interactions"]
        if i["kind"] in devices
    }
    assert seen == {
        ("INTERACTION_KIND_SHELF_SCAN", pair, STORE, "CHANNEL_SMART_SHELF"),
        ("INTERACTION_KIND_MIRROR_TRY_ON", pair, STORE, "CHANNEL_SMART_MIRROR"),
    }
