"""Journeys of messages: the welcome mail with a personal code, and an SMS pointing to it only
when the mail stays unopened (4), the abandoned cart's personal code redeemed on another
channel (5), order SMS in one segment (12)."""

from __future__ import annotations

import re
import time
from typing import Any

from tenpo.devtools.demo.api import ApiError, request_id
from tenpo.devtools.demo.journeys.stores import HOME, SKU, STORE, fulfilment
from tenpo.devtools.demo.world import (
    Customer,
    JourneyFailed,
    Shop,
    body_text,
    check,
    eventually,
    unwrap,
)

#: A timed step longer than this is not waited for by the demo: it says how to shorten it.
LONGEST_WAIT = 120.0
SHIPPING_JOURNEY = "Shipping updates (SMS)"
#: A personal code as the cart service issues them (12 of its unambiguous characters).
PERSONAL_CODE = re.compile(r"\b([2-9A-HJ-NP-Z]{12})\b")


class NotShown(Exception):
    """A journey the running stack cannot show now (its timers are set for real life); the
    message says which setting shortens them. The demo reports it; a test fails on it."""


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s") or 0)


def _welcome_wait(shop: Shop) -> float:
    journeys = shop.back_office().get("/v1/journeys", pageSize=100).get("journeys", [])
    welcome = next((j for j in journeys if j.get("displayName") == "Welcome"), None)
    check(welcome, "the seeded Welcome journey is missing")
    assert welcome is not None
    waits = [s["wait"] for s in welcome.get("steps", []) if "wait" in s]
    return _seconds(waits[0]["duration"]) if waits else 0.0


def _reachable_by_sms(shopper: Customer, phone: str) -> None:
    shopper.set_phone(phone)
    shopper.api.post(
        "/v1/customers/me/consents:grant",
        {
            "purpose": "CONSENT_PURPOSE_MARKETING",
            "channel": "CONSENT_CHANNEL_SMS",
            "wordingVersion": "marketing-sms-2026-04",
            "requestId": request_id(),
        },
    )


def _welcome_code(shop: Shop, shopper: Customer) -> tuple[dict[str, Any], str]:
    """Her welcome mail and the personal code in it."""
    mail = shop.message(shopper.id, "welcome")
    code = PERSONAL_CODE.search(mail.get("textBody", ""))
    if code is None:
        raise NotShown(
            "the welcome mail carries no code: this data directory's Welcome journey predates "
            "the welcome code (seeds add what is missing, never rewrite a journey); "
            "`make run` on a fresh data directory shows it"
        )
    check(code.group(1) in mail.get("htmlBody", ""), f"the code is not in the HTML: {mail}")
    return mail, code.group(1)


def welcome_reminder_only_when_unopened(shop: Shop) -> None:
    """4. The welcome mail with a personal code; an SMS pointing to the code in the mail only
    when it stays unopened; the code redeemed."""
    say = shop.say
    wait = _welcome_wait(shop)
    opener = shop.register("小林", "陽子")
    _reachable_by_sms(opener, "090-3333-4444")
    mail, opener_code = _welcome_code(shop, opener)
    say("notification", f"welcome mail to {opener.email}: {mail['subject']} — code {opener_code}")
    pixel = re.search(r"/v1/t/o/[A-Za-z0-9_.~-]+", mail.get("htmlBody", ""))
    check(pixel, "the welcome mail carries no open-tracking pixel")
    assert pixel is not None
    opened = shop.http.get(pixel.group(0))
    check(opened.status_code == 200, f"the open pixel answered {opened.status_code}")
    eventually(
        lambda: shop.message(opener.id, "welcome").get("openTime"), "the welcome mail's open"
    )
    say("mailbox", f"{opener.name} opens it (the tracking pixel loads)")

    forgetful = shop.register("加藤", "恵")
    _reachable_by_sms(forgetful, "090-5555-6666")
    say("web shop", f"{opener.name} and {forgetful.name} gave their mobile number and SMS consent")
    _, code = _welcome_code(shop, forgetful)
    check(code != opener_code, "two customers got the same personal code")
    say("notification", f"welcome mail to {forgetful.email} with her code; she leaves it unopened")
    if wait > LONGEST_WAIT:
        raise NotShown(
            f"the Welcome journey waits {wait / 3600:.0f} h for the open here; start `make run` "
            "on a fresh data directory with NOTIFICATION_WELCOME_REMINDER_AFTER_SECONDS=20 to see "
            "the reminder"
        )
    say("notification", f"the Welcome journey waits {wait:.0f} s for an open")
    reminder = shop.message(
        forgetful.id, "welcome_reminder", statuses=("SENT", "DEFERRED"), timeout=wait + 60
    )
    check(reminder["channel"] == "MESSAGE_CHANNEL_SMS", f"the reminder is no SMS: {reminder}")
    check(reminder.get("segments") == 1, f"the reminder takes {reminder.get('segments')} segments")
    text = reminder["textBody"]
    check(
        ("メール" in text and "クーポンコード" in text) or ("mail" in text and "code" in text),
        f"the reminder does not point to the code in the mail: {text}",
    )
    check(code not in text, "the code belongs to the mail, not to the SMS")
    if reminder["status"] == "MESSAGE_STATUS_DEFERRED":
        check(reminder.get("statusReason") == "QUIET_HOURS", f"deferred why? {reminder}")
        say(
            "notification",
            f"SMS reminder to {forgetful.name} held until the quiet hours end "
            f"({reminder.get('scheduledTime')}): {reminder['textBody']}",
        )
    else:
        say("notification", f"SMS reminder to {reminder['toAddress']}: {reminder['textBody']}")
    # Her wait began before the other's, and ended at her open: had it led to a reminder,
    # that reminder would be there by now.
    sent = [m["templateKey"] for m in shop.messages(opener.id)]
    check("welcome_reminder" not in sent, f"{opener.name} opened her mail yet got {sent}")
    say("notification", f"no reminder for {opener.name}: she had opened the mail")

    # The SMS sends her to her mailbox; she finds the code and uses it on her phone.
    shop.receive_stock(STORE, SKU, 1)
    on_app = shop.sign_in(forgetful, app=True)
    on_app.add(SKU)
    cart = on_app.cart()
    applied = unwrap(
        on_app.api.post(
            f"/v1/carts/{cart['id']}:applyPromotionCode",
            {"code": code, "requestId": request_id()},
        ),
        "cart",
    )
    discount = int(applied["totals"].get("discount", {}).get("units", 0) or 0)
    check(discount > 0, f"her welcome code took nothing off: {applied.get('rejectedCodes')}")
    say("app", f"{forgetful.name} opens the mail and applies {code} in the app: −{discount} JPY")
    cart = on_app.fulfil("PICKUP", STORE)
    order = on_app.settled(on_app.place_order(cart, "PAY_AT_STORE"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"{order}")
    check(int(order["totals"]["discount"]["units"]) == discount, f"{order['totals']}")
    say("app", f"her first order with the welcome code: {order['orderNumber']}")


def _confirm_mail_consent(shop: Shop, shopper: Customer) -> None:
    """Marketing mail needs double opt-in: granted, then confirmed from her mailbox."""
    shopper.api.post(
        "/v1/customers/me/consents:grant",
        {
            "purpose": "CONSENT_PURPOSE_MARKETING",
            "channel": "CONSENT_CHANNEL_EMAIL",
            "wordingVersion": "marketing-email-2026-04",
            "requestId": request_id(),
        },
    )
    shop.message(shopper.id, "account.confirm_consent")

    def token() -> str | None:
        for mail in shop.mails_to(shopper.email):
            found = re.search(r"confirm-consent\?token=([A-Za-z0-9_.~-]+)", body_text(mail))
            if found:
                return found.group(1)
        return None

    shop.web().post("/v1/consents:confirm", {"token": eventually(token, "the confirmation mail")})
    shop.say("mailbox", f"{shopper.name} confirms marketing mail from the link in her mailbox")


def abandoned_cart_code_on_another_channel(shop: Shop, *, patience: float = 60.0) -> None:
    """5. An abandoned cart → a mail with a personal time-limited code, redeemed on another
    channel."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 1)
    shopper = shop.register("山本", "彩")
    _confirm_mail_consent(shop, shopper)
    cart = shopper.add(SKU)
    say(
        "web shop",
        f"{shopper.name} leaves {SKU} in her cart ({cart['totals']['total']['units']} JPY)",
    )
    try:
        mail = shop.message(shopper.id, "cart_abandoned", timeout=patience)
    except JourneyFailed:
        raise NotShown(
            f"no abandoned-cart mail within {patience:.0f} s: the cart service announces a cart "
            "after CART_ABANDON_AFTER_SECONDS (4 h by default); `make run` with "
            "CART_ABANDON_AFTER_SECONDS=20 CART_SWEEP_INTERVAL_SECONDS=5 shows it"
        ) from None
    code = re.search(r"\b([A-Z0-9]{12})\b", mail["textBody"])
    check(code, f"no personal code in the mail: {mail['textBody']}")
    assert code is not None
    say("notification", f"mail to {shopper.email}: {mail['subject']} — code {code.group(1)}")

    on_app = shop.sign_in(shopper, app=True)
    say("app", f"{shopper.name} opens the app on her phone: the same cart")
    cart = on_app.cart()
    applied = unwrap(
        on_app.api.post(
            f"/v1/carts/{cart['id']}:applyPromotionCode",
            {"code": code.group(1), "requestId": request_id()},
        ),
        "cart",
    )
    discount = int(applied["totals"].get("discount", {}).get("units", 0) or 0)
    check(discount > 0, f"the personal code took nothing off: {applied.get('rejectedCodes')}")
    say("app", f"applies {code.group(1)}: −{discount} JPY")
    cart = on_app.fulfil("PICKUP", STORE)
    order = on_app.settled(on_app.place_order(cart, "PAY_AT_STORE"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"{order}")
    check(int(order["totals"]["discount"]["units"]) == discount, f"{order['totals']}")
    check(order["channel"] == "CHANNEL_APP", f"ordered on {order['channel']}")
    say(
        "app",
        f"orders with the code: {order['orderNumber']}, {order['totals']['total']['units']} JPY",
    )

    again = shop.register("山本", "次郎")
    other_cart = again.add(SKU)
    try:
        again.api.post(
            f"/v1/carts/{other_cart['id']}:applyPromotionCode",
            {"code": code.group(1), "requestId": request_id()},
        )
    except ApiError as error:
        say("web shop", f"the code is hers alone: someone else is refused ({error.reason})")
    else:
        refused = unwrap(again.cart(), "cart").get("rejectedCodes", [])
        check(refused, "her personal code worked in another customer's cart")
        say(
            "web shop",
            f"the code is hers alone: someone else's cart rejects it ({refused[0]['reason']})",
        )


def _shipping_journey(shop: Shop) -> None:
    """The retailer's shipping SMS, defined as data through the API (once)."""
    staff = shop.back_office()
    journeys = staff.get("/v1/journeys", pageSize=100).get("journeys", [])
    if any(j.get("displayName") == SHIPPING_JOURNEY for j in journeys):
        return
    bodies = {
        "ja": "Tenpo: ご注文{{ fulfillment_order_number }}を発送しました。"
        "追跡番号 {{ tracking_number }}",
        "en": "Tenpo: order {{ fulfillment_order_number }} has shipped, "
        "tracking {{ tracking_number }}.",
    }
    for language, body in bodies.items():
        try:
            staff.post(
                "/v1/notificationTemplates",
                {
                    "key": "order_shipped",
                    "channel": "MESSAGE_CHANNEL_SMS",
                    "language": language,
                    "category": "MESSAGE_CATEGORY_TRANSACTIONAL",
                    "textBody": body,
                    "segmentBudget": 1,
                    "sampleData": {
                        "fulfillment_order_number": "T-000123",
                        "tracking_number": "YM-1",
                    },
                },
            )
        except ApiError as error:
            if error.status != 409:
                raise
    staff.post(
        "/v1/journeys",
        {
            "displayName": SHIPPING_JOURNEY,
            "triggerEvent": "tenpo.order.v1.FulfillmentShipped",
            "steps": [
                {
                    "id": "shipped-sms",
                    "send": {"templateKey": "order_shipped", "channel": "MESSAGE_CHANNEL_SMS"},
                }
            ],
        },
    )
    shop.say("back office", f"marketing adds the '{SHIPPING_JOURNEY}' journey (data, no code)")


def order_sms_in_one_segment(shop: Shop) -> None:
    """12. Order confirmation and shipping updates by SMS, each within one segment."""
    say = shop.say
    _shipping_journey(shop)
    shopper = shop.register("吉田", "真由")
    shopper.set_phone("080-7777-8888")
    shopper.add(SKU)
    cart = shopper.fulfil("DELIVERY", address=HOME)
    order = shopper.settled(shopper.place_order(cart, "CARD"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"{order}")
    say("web shop", f"{shopper.name} orders {SKU} for delivery: {order['orderNumber']}")
    confirmation = shop.message(shopper.id, "order_confirmation")
    _one_segment(confirmation)
    say("notification", f"SMS ({confirmation['segments']} segment): {confirmation['textBody']}")

    item = fulfilment(order)
    staff = shop.staff()
    base = f"/v1/orders/{order['id']}/fulfillments/{item['id']}"
    staff.post(f"{base}:pick", {"requestId": request_id()})
    staff.post(f"{base}:pack", {"requestId": request_id()})
    tracking = f"YM-{int(time.time())}"
    staff.post(
        f"{base}:ship", {"carrier": "yamato", "trackingNumber": tracking, "requestId": request_id()}
    )
    say(
        "staff",
        f"{item.get('locationId') or item.get('storeId')} ships {item['number']} "
        f"with yamato {tracking}",
    )
    shipped = shop.message(shopper.id, "order_shipped")
    _one_segment(shipped)
    check(
        tracking in shipped["textBody"] and order["orderNumber"] in shipped["textBody"],
        f"{shipped}",
    )
    say("notification", f"SMS ({shipped['segments']} segment): {shipped['textBody']}")


def _one_segment(message: dict[str, Any]) -> None:
    check(message["channel"] == "MESSAGE_CHANNEL_SMS", f"not an SMS: {message}")
    check(
        message.get("segments") == 1, f"{message.get('segments')} segments: {message['textBody']}"
    )
    if message["status"] != "MESSAGE_STATUS_SENT":
        raise JourneyFailed(f"not sent: {message}")
