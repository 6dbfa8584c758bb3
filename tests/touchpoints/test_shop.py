"""The web shop in a real browser against the whole stack: search in Japanese and English with
a facet, the product page's nearest stores and a stock change arriving over SSE without a
reload, the cart total, then sign-up, click & collect checkout, points, export and erasure."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Page, expect

from tests.touchpoints.conftest import PASSWORD, SKU, STORE, TOUCHPOINT_MARKS, Pages, Stack

pytestmark = TOUCHPOINT_MARKS


async def settled(page: Page, query: str) -> None:
    """The newest search has rendered: the page drops answers to searches it has replaced."""
    results = page.locator("#results")
    await expect(results).to_have_attribute("data-state", "ready")
    await expect(results).to_have_attribute("data-query", query)


async def test_search_product_live_stock_and_cart(stack: Stack, pages: Pages) -> None:
    page = await pages.open("/examples/shop/")
    await page.fill("#query", "スニーカー")
    await page.click("#search button")
    await settled(page, "スニーカー")
    first = page.locator("#results li a").first
    await expect(first).to_contain_text("スニーカー")
    total_ja = int(re.sub(r"\D", "", await page.locator("#total").inner_text()))
    assert total_ja > 1

    # English: the same products, titled in English.
    await page.select_option("#language", "en")
    await page.fill("#query", "sneakers")
    await page.click("#search button")
    await settled(page, "sneakers")
    await expect(page.locator("#results li a").first).to_contain_text("Sneakers")
    # A brand facet narrows the results to that brand.
    brand = page.locator(".facet", has_text="brand:").locator("label").first
    brand_count = int(re.search(r"\((\d+)\)", await brand.inner_text()).group(1))  # type: ignore[union-attr]
    await brand.locator("input").check()
    await settled(page, "sneakers")
    await expect(page.locator("#total")).to_have_text(f"({brand_count})")
    assert brand_count < total_ja
    await pages.screenshot(page, "search")

    # The product page of the leather sneakers, size 25.0: stores near Shibuya with stock.
    await page.fill("#query", "Leather Sneakers Red")
    await brand.locator("input").uncheck()
    await page.click("#search button")
    await page.locator("#results li a", has_text="Leather Sneakers (Red)").first.click()
    await page.select_option("#sku", SKU)
    await expect(page.locator(f"#stores li[data-store='{STORE}']")).to_contain_text("in stock")
    stock = page.locator(f"#network-stock[data-sku='{SKU}']")
    await expect(stock).to_have_attribute("data-kind", "AVAILABILITY_UPDATE_KIND_SNAPSHOT")
    before = int(await stock.inner_text())

    # Goods received in Shibuya: the number changes on the open page, no reload.
    with stack.staff() as staff:
        adjusted = staff.post(
            f"/v1/locations/{STORE}/stockLevels/{SKU}:adjust",
            json={"quantity": 7, "reason": "MOVEMENT_REASON_RECEIPT"},
        )
        assert adjusted.status_code == 200, adjusted.text
    await expect(stock).to_have_text(str(before + 7), timeout=20_000)
    await expect(stock).to_have_attribute("data-kind", "AVAILABILITY_UPDATE_KIND_CHANGE")
    await pages.screenshot(page, "product")

    # Into a guest cart: the total is the line's price.
    price = await page.locator("#price").inner_text()
    await page.click("#add")
    await expect(page.locator("#cart-total")).to_have_text(price)
    await expect(page.locator("#cart-total")).to_have_attribute("data-lines", "1")
    await page.click("#add")
    await expect(page.locator("#cart-total")).to_have_attribute("data-lines", "2")
    assert await page.locator("#cart-total").inner_text() != price  # twice the price
    await pages.screenshot(page, "cart")


async def test_sign_up_click_and_collect_points_export_and_erase(
    stack: Stack, pages: Pages
) -> None:
    email = f"touch.{uuid.uuid4().hex[:10]}@example.jp"
    page = await pages.open("/examples/shop/")
    # A guest cart first: signing in merges it into hers.
    await page.fill("#query", "スニーカー")
    await page.click("#search button")
    await page.locator("#results li a").first.click()
    await expect(page.locator("#stores li").first).to_be_visible()
    await page.click("#add")
    await expect(page.locator("#cart-total")).to_have_attribute("data-lines", "1")

    # She registers in the shop: a weak password is refused first, with the reason.
    await page.click("#register-box summary")
    await page.fill("#register-family", "試験")
    await page.fill("#register-given", "花子")
    await page.fill("#register-email", email)
    await page.fill("#register-password", "short")
    await page.click("#register button")
    await expect(page.locator("#error")).to_contain_text("password: at least 10 characters")
    pages.expected_problem(r"REGISTRATION_INVALID|status of 400")
    await page.fill("#register-password", PASSWORD)
    await page.click("#register button")
    await expect(page.locator("#who")).to_have_text("試験 花子")
    await expect(page.locator("#points")).to_have_text("0 pt")
    await expect(page.locator("#cart-total")).to_have_attribute("data-lines", "1")

    # Click & collect in a store that has the size, paid at the store.
    store_option = page.locator("#store option").first
    store = await store_option.get_attribute("value")
    await page.select_option("#fulfillment", "FULFILLMENT_METHOD_PICKUP")
    await page.select_option("#store", store)
    await page.select_option("#payment", "PAYMENT_METHOD_PAY_AT_STORE")
    await page.click("#checkout button")
    await expect(page.locator("#order")).to_have_attribute(
        "data-status", "ORDER_STATUS_PLACED", timeout=30_000
    )
    await expect(page.locator("#orders li").first).to_contain_text("PLACED")
    await expect(page.locator("#orders li").first).to_contain_text("PICKUP")
    await expect(page.locator("#cart-total")).to_have_attribute("data-lines", "0")
    await pages.screenshot(page, "ordered")

    await page.click("#export")
    await expect(page.locator("#export-out")).to_contain_text(email)
    await pages.screenshot(page, "export")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#erase")
    await expect(page.locator("#sign-in")).to_be_visible()
    # Erased: her password no longer signs in.
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in button")
    await expect(page.locator("#error")).to_be_visible()
    pages.expected_problem(r"40[013]|ApiError")
