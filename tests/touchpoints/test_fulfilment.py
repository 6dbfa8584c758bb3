"""Click & collect across the pages, in a real browser against the whole stack: ordered in
the web shop, put on the pickup shelf from the staff page's store work list, the pickup code
arriving on her open order page (SSE, no reload), handed over on the kiosk against the code,
then taken back at another store's returns desk and refunded."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.touchpoints.conftest import PASSWORD, SKU, STORE, TOUCHPOINT_MARKS, Pages, Stack

pytestmark = TOUCHPOINT_MARKS
OTHER_STORE = "tokyo-ginza"


async def test_pickup_code_live_collected_on_the_kiosk_and_returned(
    stack: Stack, pages: Pages
) -> None:
    with stack.staff() as staff:
        received = staff.post(
            f"/v1/locations/{STORE}/stockLevels/{SKU}:adjust",
            json={"quantity": 2, "reason": "MOVEMENT_REASON_RECEIPT"},
        )
        assert received.status_code == 200, received.text
    email = stack.register(family="森", given="千夏")

    # The web shop: her click & collect order in Shibuya, paid at the store.
    shop = await pages.open("/examples/shop/")
    await shop.fill("#email", email)
    await shop.fill("#password", PASSWORD)
    await shop.click("#sign-in button")
    await expect(shop.locator("#signed-in")).to_be_visible()
    await shop.select_option("#language", "en")
    await shop.fill("#query", "Leather Sneakers Red")
    await shop.click("#search button")
    await shop.locator("#results li a", has_text="Leather Sneakers (Red)").first.click()
    await shop.select_option("#sku", SKU)
    await expect(shop.locator(f"#stores li[data-store='{STORE}']")).to_be_visible()
    await shop.click("#add")
    await expect(shop.locator("#cart-total")).to_have_attribute("data-lines", "1")
    await shop.select_option("#fulfillment", "FULFILLMENT_METHOD_PICKUP")
    await shop.select_option("#store", STORE)
    await shop.select_option("#payment", "PAYMENT_METHOD_PAY_AT_STORE")
    await shop.click("#checkout button")
    order = shop.locator("#order")
    await expect(order).to_have_attribute("data-status", "ORDER_STATUS_PLACED", timeout=30_000)
    order_number = re.search(r"T-\d+", await order.inner_text()).group(0)  # type: ignore[union-attr]
    preparing = shop.locator("#order-fulfilments li").first
    await expect(preparing).to_have_attribute("data-status", "FULFILLMENT_STATUS_PREPARING")
    await expect(shop.locator("#pickup")).to_be_hidden()

    # The staff page: Shibuya's work list has it; staff put it on the pickup shelf.
    staff_page = await pages.open("/examples/staff/")
    credentials = stack.credentials["staff"]
    await staff_page.fill("#email", credentials["email"])
    await staff_page.fill("#password", credentials["password"])
    await staff_page.click("#sign-in button")
    await staff_page.select_option("#store", STORE)
    row = staff_page.locator(f"#pickups tr[data-order-number='{order_number}']")
    await expect(row).to_have_attribute("data-status", "FULFILLMENT_STATUS_PREPARING")
    await row.locator("button", has_text="Ready").click()
    await expect(row).to_have_attribute("data-status", "FULFILLMENT_STATUS_READY_FOR_PICKUP")
    await expect(row).to_contain_text("hold until")
    await pages.screenshot(staff_page, "pickup-shelf")

    # Her order page turns to ready with the code, over the order stream: no reload.
    code = shop.locator("#pickup-code")
    await expect(code).to_have_text(re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{8}$"))
    await expect(preparing).to_have_attribute("data-status", "FULFILLMENT_STATUS_READY_FOR_PICKUP")
    qr = shop.locator("#pickup-qr img")
    assert (await qr.get_attribute("data-payload") or "").startswith("tenpo:pickup:")
    pickup_code = await code.inner_text()
    await pages.screenshot(shop, "pickup-code")

    # The kiosk of the store: a wrong code is refused with its reason; hers hands it over.
    device = stack.device("KIOSK")
    kiosk = await pages.open("/examples/kiosk/")
    await kiosk.fill("#client-id", device["client_id"])
    await kiosk.fill("#client-secret", device["client_secret"])
    await kiosk.click("#setup-form button")
    await expect(kiosk.locator("#pickup-section")).to_be_visible()
    wrong = "BCDFGHJK" if pickup_code != "BCDFGHJK" else "CDFGHJKL"
    await kiosk.fill("#pickup-order", order_number)
    await kiosk.fill("#pickup-code", wrong)
    await kiosk.click("#pickup button")
    await expect(kiosk.locator("#error")).to_contain_text("PICKUP_CODE_MISMATCH")
    pages.expected_problem(r"PICKUP_CODE_MISMATCH|status of 400")
    await kiosk.fill("#pickup-code", pickup_code.lower())  # typed as it comes
    await kiosk.click("#pickup button")
    result = kiosk.locator("#pickup-result")
    await expect(result).to_contain_text("handed over")
    await expect(result).to_have_attribute("data-status", "FULFILLMENT_STATUS_PICKED_UP")
    await pages.screenshot(kiosk, "collected")

    # On her order page, live: picked up, the order completed, paid; returns explained.
    await expect(order).to_have_attribute("data-status", "ORDER_STATUS_COMPLETED")
    await expect(preparing).to_have_attribute("data-status", "FULFILLMENT_STATUS_PICKED_UP")
    await expect(shop.locator("#pickup")).to_be_hidden()
    await expect(shop.locator("#order-total")).to_contain_text("captured")
    await expect(shop.locator("#order-return")).to_be_visible()

    # Brought back to another store: taken back there and refunded.
    await staff_page.select_option("#store", OTHER_STORE)
    await staff_page.fill("#return-number", order_number)
    await staff_page.click("#return-find button")
    await expect(staff_page.locator("#return-title")).to_contain_text(order_number)
    await staff_page.locator(f".return-quantity[data-sku='{SKU}']").fill("1")
    await staff_page.click("#return-form button")
    returned = staff_page.locator("#return-result")
    await expect(returned).to_have_attribute("data-status", "RETURN_STATUS_COMPLETED")
    await expect(returned).to_contain_text(f"Taken back in {OTHER_STORE}: {SKU} × 1")
    await expect(returned).to_contain_text("refunded")
    await pages.screenshot(staff_page, "returned")
    # Taken back once: the same units again are refused with the reason.
    await staff_page.click("#return-find button")
    await staff_page.locator(f".return-quantity[data-sku='{SKU}']").fill("1")
    await staff_page.click("#return-form button")
    await expect(staff_page.locator("#error")).to_contain_text("NOT_RETURNABLE")
    pages.expected_problem(r"NOT_RETURNABLE|status of 400")
