"""The staff page and the dev inbox in a real browser against the whole stack: a customer
found, her orders from every channel in the 360° view, her pickup in a store; the welcome
mail she was sent, in the inbox."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import expect

from tests.touchpoints.conftest import PASSWORD, SKU, STORE, TOUCHPOINT_MARKS, Pages, Stack

pytestmark = TOUCHPOINT_MARKS


def _pickup_order(stack: Stack, email: str, phone: str = "") -> str:
    """Her click & collect order in Shibuya, placed over the API as the app would."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as api:
        signed_in = api.post("/v1/identity:signIn", json={"email": email, "password": PASSWORD})
        token = signed_in.json()["tokens"]["accessToken"]
        api.headers["authorization"] = f"Bearer {token}"
        if phone:
            # The body is the customer itself; the mask travels in the query.
            updated = api.patch(
                "/v1/customers/me",
                params={"updateMask": "phoneNumber"},
                json={"phoneNumber": phone},
            )
            assert updated.status_code == 200, updated.text
        cart = api.get("/v1/carts:active").json()
        api.post(f"/v1/carts/{cart['id']}/lineItems", json={"sku": SKU, "quantity": 1})
        fulfillment = {"method": "FULFILLMENT_METHOD_PICKUP", "storeId": STORE}
        cart = api.patch(
            f"/v1/carts/{cart['id']}",
            json={"cart": {"fulfillment": fulfillment}, "updateMask": "fulfillment"},
        ).json()
        cart = cart.get("cart", cart)
        placed = api.post(
            "/v1/orders",
            json={
                "cartId": cart["id"],
                "cartEtag": cart["etag"],
                "payment": {"method": "PAYMENT_METHOD_PAY_AT_STORE"},
                "requestId": str(uuid.uuid4()),
            },
        )
        assert placed.status_code == 200, placed.text
        order = placed.json()
        return str(order.get("order", order)["orderNumber"])


async def test_customer_360_and_pickups(stack: Stack, pages: Pages) -> None:
    email = stack.register(family="鈴木", given="一郎")
    order_number = _pickup_order(stack, email)
    page = await pages.open("/examples/staff/")
    credentials = stack.credentials["staff"]
    await page.fill("#email", credentials["email"])
    await page.fill("#password", credentials["password"])
    await page.click("#sign-in button")
    await expect(page.locator("#lookup-section")).to_be_visible()
    await page.select_option("#store", STORE)
    await page.fill("#lookup-query", email)
    await page.click("#lookup button")
    await page.locator("#customers li a", has_text="鈴木 一郎").click()
    await expect(page.locator("#customer-name")).to_have_text("鈴木 一郎")
    row = page.locator("#customer-orders tr", has_text=order_number)
    await expect(row).to_contain_text("placed")
    await expect(row).to_contain_text("pickup")
    await expect(page.locator("#pickups tr", has_text=order_number)).to_be_visible()
    await expect(page.locator("#customer-points")).to_have_text("0 pt")
    await pages.screenshot(page, "customer-360")

    # Cancelled at the store: gone from the pickups, cancelled in her history.
    page.once("dialog", lambda dialog: dialog.accept())
    await (
        page.locator("#pickups tr", has_text=order_number)
        .locator("button", has_text="Cancel")
        .click()
    )
    await expect(page.locator("#pickups tr", has_text=order_number)).to_have_count(0)
    await page.locator("#customers li a", has_text="鈴木 一郎").click()
    await expect(page.locator("#customer-orders tr", has_text=order_number)).to_contain_text(
        "cancelled"
    )


async def test_dev_inbox_shows_the_welcome_mail(stack: Stack, pages: Pages) -> None:
    email = stack.register(family="佐藤", given="花")
    page = await pages.open("/examples/inbox/")
    await page.fill("#token", stack.staff_token)
    await page.click("#token-form button")
    await expect(page.locator("#messages-section")).to_be_visible()
    # The welcome journey sends on its own time: refresh until it is there.
    mail = page.locator("#messages tr", has_text=email)
    for _ in range(60):
        if await mail.count():
            break
        await page.click("#refresh")
        await page.wait_for_timeout(500)
    await expect(mail.first).to_be_visible()
    await mail.locator("a", has_text="ようこそ").click()
    await expect(page.locator("#meta")).to_contain_text(f"email to {email}")
    await expect(page.locator("#body")).to_contain_text("ご登録ありがとうございます")
    await pages.screenshot(page, "welcome-mail")


async def test_dev_inbox_after_the_staff_sign_in_shows_an_order_sms(
    stack: Stack, pages: Pages
) -> None:
    # In development the staff sign-in carries notifications:read: no token to paste.
    email = stack.register(family="高田", given="蓮")
    order_number = _pickup_order(stack, email, phone="090-2468-1357")
    page = await pages.open("/examples/inbox/")
    credentials = stack.credentials["staff"]
    await page.fill("#email", credentials["email"])
    await page.fill("#password", credentials["password"])
    await page.click("#sign-in button")
    await expect(page.locator("#messages-section")).to_be_visible()
    sms = page.locator("#messages tr[data-channel='sms']", has_text="+819024681357")
    for _ in range(60):
        if await sms.count():
            break
        await page.click("#refresh")
        await page.wait_for_timeout(500)
    await expect(sms.first).to_be_visible()
    await sms.first.locator("a").click()
    await expect(page.locator("#meta")).to_contain_text("sms to +819024681357 · sent")
    await expect(page.locator("#body")).to_contain_text(order_number)
    await pages.screenshot(page, "order-sms")
