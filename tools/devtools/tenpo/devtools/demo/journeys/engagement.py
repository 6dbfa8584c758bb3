"""Engagement journeys: the birthday code for a product she looked at (6), first-time vs loyal
campaigns and the lapsed-customer offer (8), the thank-you with complementary products and the
review request after delivery or pickup (11). The customer service computes the segments and
sweeps birthdays; the notification service's seeded journeys (and two campaigns the back office
defines here as data) send the mails."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tenpo.devtools.demo.api import ApiError, request_id
from tenpo.devtools.demo.journeys.messages import NotShown, _confirm_mail_consent
from tenpo.devtools.demo.journeys.stores import HOME, SIZE, SKU, STORE, fulfilment
from tenpo.devtools.demo.world import Customer, JourneyFailed, Shop, check, eventually, unwrap

#: A product of another kind (a T-shirt): a code scoped to the sneakers takes nothing off it.
OTHER_SKU = "TEE-0103-M"
#: The back office's segment campaigns (journey 8): segment key → (journey, template key).
CAMPAIGNS = {
    "first_time_buyer": ("Campaign: first order", "campaign_first_time"),
    "loyal": ("Campaign: loyal customers", "campaign_loyal"),
}
_CAMPAIGN_MAIL = {
    "campaign_first_time": {
        "ja": ("初めてのご注文ありがとうございます", "次のお買い物もお待ちしています。"),
        "en": ("Thank you for your first order", "We look forward to your next visit."),
    },
    "campaign_loyal": {
        "ja": ("いつもありがとうございます", "常連のお客さまへ、先行セールのご案内です。"),
        "en": ("Thank you for staying with us", "An early sale, for our loyal customers."),
    },
}


def _code(text: str) -> str:
    found = re.search(r"\b([A-Z0-9]{12})\b", text)
    check(found, f"no personal code in the mail: {text}")
    assert found is not None
    return found.group(1)


def _mail(shop: Shop, customer_id: str, key: str, timeout: float = 60.0) -> dict[str, Any]:
    """Her marketing mail ``key``, sent; one skipped by the daily cap is named as such."""
    try:
        return shop.message(customer_id, key, timeout=timeout)
    except JourneyFailed:
        capped = [
            m
            for m in shop.messages(customer_id)
            if m.get("templateKey") == key and m.get("statusReason") == "FREQUENCY_CAPPED"
        ]
        if capped:
            raise NotShown(
                f"her {key} mail was skipped by the daily marketing cap "
                "(NOTIFICATION_DAILY_MARKETING_CAP, 2 a day); `make run` with "
                "NOTIFICATION_DAILY_MARKETING_CAP=10 shows every journey's mail"
            ) from None
        raise


def _apply(shopper: Customer, code: str) -> tuple[int, list[Any]]:
    """(discount, rejected codes) of her cart once the code is applied."""
    cart = shopper.cart()
    try:
        applied = unwrap(
            shopper.api.post(
                f"/v1/carts/{cart['id']}:applyPromotionCode",
                {"code": code, "requestId": request_id()},
            ),
            "cart",
        )
    except ApiError as error:
        return 0, [error.reason]
    discount = int(applied["totals"].get("discount", {}).get("units", 0) or 0)
    return discount, list(applied.get("rejectedCodes", []))


def birthday_code_for_a_viewed_product(shop: Shop, *, patience: float = 60.0) -> None:
    """6. Her birthday (today in Tokyo): a 20 % code for the product she tried on."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 1)
    shopper = shop.register("松本", "桜")
    _confirm_mail_consent(shop, shopper)
    mirror = shop.device("SMART_MIRROR", STORE)
    on_mirror = mirror.hand_off(shopper, say)
    on_mirror.try_on(SKU, SIZE)
    say(mirror.label, f"{shopper.name} tries on {SKU} in size {SIZE}")
    # Her birthday is given after the try-on: the sweep finds her at once (short interval
    # here), and the journey looks for a product she looked at when its step runs.
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    shopper.api.patch(
        "/v1/customers/me",
        {"birthday": {"year": 1990, "month": today.month, "day": today.day}},
        updateMask="birthday",
    )
    say("web shop", f"{shopper.name} adds her birthday to her profile: {today:%m-%d}, today")
    try:
        mail = _mail(shop, shopper.id, "birthday", timeout=patience)
    except JourneyFailed:
        raise NotShown(
            f"no birthday mail within {patience:.0f} s: the customer service looks for today's "
            "birthdays every CUSTOMER_ENGAGEMENT_SWEEP_INTERVAL_SECONDS (600 by default); "
            "`make run` with CUSTOMER_ENGAGEMENT_SWEEP_INTERVAL_SECONDS=5 shows it"
        ) from None
    code = _code(mail["textBody"])
    check("/products/" in mail["textBody"], f"the mail names no product: {mail['textBody']}")
    say("notification", f"birthday mail to {shopper.email}: {mail['subject']} — code {code}")

    other = shop.register("松本", "健")
    other.add(OTHER_SKU)
    discount, rejected = _apply(other, code)
    check(discount == 0 and rejected, f"her birthday code worked for someone else: {discount}")
    say("web shop", "the code is hers alone: someone else's cart takes nothing off")

    shopper.add(OTHER_SKU)
    discount, _ = _apply(shopper, code)
    check(discount == 0, f"the code took {discount} JPY off a product it is not for")
    say("web shop", f"on {OTHER_SKU} alone her code takes nothing off: it is for {SKU}")
    shopper.add(SKU)
    cart = shopper.cart()
    if not int(cart["totals"].get("discount", {}).get("units", 0) or 0):
        _apply(shopper, code)  # a code refused on the T-shirt alone is not kept: apply again
        cart = shopper.cart()
    lines = {li["sku"]: li for li in cart.get("lineItems", [])}
    off = {sku: int(line.get("discount", {}).get("units", 0) or 0) for sku, line in lines.items()}
    subtotal = int(lines[SKU]["subtotal"]["units"])
    check(abs(off[SKU] - subtotal / 5) <= 1, f"20 % of {subtotal} expected off {SKU}: {off}")
    check(off[OTHER_SKU] == 0, f"the birthday code took {off[OTHER_SKU]} JPY off {OTHER_SKU}")
    say("web shop", f"with {SKU} in her cart: −{off[SKU]} JPY on that product only (20 %)")


def _campaigns(shop: Shop) -> None:
    """The marketing team's segment campaigns, defined as data through the API (once)."""
    staff = shop.back_office()
    journeys = staff.get("/v1/journeys", pageSize=100).get("journeys", [])
    names = {j.get("displayName") for j in journeys}
    for segment, (name, key) in CAMPAIGNS.items():
        if name in names:
            continue
        for language, (subject, text) in _CAMPAIGN_MAIL[key].items():
            try:
                staff.post(
                    "/v1/notificationTemplates",
                    {
                        "key": key,
                        "channel": "MESSAGE_CHANNEL_EMAIL",
                        "language": language,
                        "category": "MESSAGE_CATEGORY_MARKETING",
                        "subject": subject,
                        "textBody": text + "\n{{ shop_url }}",
                        "htmlBody": f'<p>{text}</p><p><a href="{{{{ shop_url }}}}">Tenpo</a></p>',
                    },
                )
            except ApiError as error:
                if error.status != 409:
                    raise
        staff.post(
            "/v1/journeys",
            {
                "displayName": name,
                "triggerEvent": "tenpo.customer.v1.SegmentEntered",
                "triggerMatch": {"segment": segment},
                "steps": [
                    {"id": "mail", "send": {"templateKey": key, "channel": "MESSAGE_CHANNEL_EMAIL"}}
                ],
            },
        )
        shop.say("back office", f"marketing adds '{name}' (SegmentEntered {segment}; data)")


def _order_for_delivery(shopper: Customer, sku: str = SKU) -> dict[str, Any]:
    shopper.add(sku)
    cart = shopper.fulfil("DELIVERY", address=HOME)
    order = shopper.settled(shopper.place_order(cart, "CARD"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"{order}")
    return order


def segment_campaigns_and_lapsed_offer(shop: Shop, *, patience: float = 120.0) -> None:
    """8. First-time vs loyal campaigns; the lapsed-customer offer."""
    say = shop.say
    _campaigns(shop)
    shop.receive_stock(STORE, SKU, 3)
    first = shop.register("井上", "舞")
    loyal = shop.register("木村", "凛")
    for shopper in (first, loyal):
        _confirm_mail_consent(shop, shopper)
    order = _order_for_delivery(first)
    say("web shop", f"{first.name} places her first order: {order['orderNumber']}")
    mail = _mail(shop, first.id, "campaign_first_time")
    say("notification", f"first-time campaign mail to {first.email}: {mail['subject']}")

    for n in range(2):
        order = _order_for_delivery(loyal)
        say("web shop", f"{loyal.name} orders again ({n + 1}): {order['orderNumber']}")
    try:
        mail = _mail(shop, loyal.id, "campaign_loyal")
    except JourneyFailed:
        raise NotShown(
            "two orders do not make a loyal customer here: CUSTOMER_SEGMENT_LOYAL_MIN_ORDERS is "
            "5 by default; `make run` with CUSTOMER_SEGMENT_LOYAL_MIN_ORDERS=2 shows it"
        ) from None
    say("notification", f"loyal campaign mail to {loyal.email}: {mail['subject']}")
    sent = [m["templateKey"] for m in shop.messages(first.id)]
    check("campaign_loyal" not in sent, f"{first.name} is no loyal customer, yet got {sent}")
    say("notification", f"{first.name} (one order) got no loyal-customer mail")

    say("customer", "no order from her since: she becomes lapsed (a short threshold here)")
    try:
        offer = _mail(shop, first.id, "lapsed_offer", timeout=patience)
    except JourneyFailed:
        raise NotShown(
            f"no lapsed offer within {patience:.0f} s: a customer lapses "
            "CUSTOMER_SEGMENT_LAPSED_AFTER_DAYS (183) after her last order; `make run` with "
            "CUSTOMER_SEGMENT_LAPSED_AFTER_DAYS=0.0005 "
            "CUSTOMER_ENGAGEMENT_SWEEP_INTERVAL_SECONDS=5 shows it"
        ) from None
    code = _code(offer["textBody"])
    say("notification", f"lapsed offer to {first.email}: {offer['subject']} — code {code}")
    first.add(SKU)
    discount, rejected = _apply(first, code)
    check(discount > 0, f"the lapsed offer's code took nothing off: {rejected}")
    say("web shop", f"{first.name} applies {code}: −{discount} JPY")


def thank_you_and_review_request(shop: Shop) -> None:
    """11. A thank-you with complementary products after an order; a review request after
    delivery (and after a pickup)."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 2)
    shopper = shop.register("斎藤", "結衣")
    _confirm_mail_consent(shop, shopper)
    order = _order_for_delivery(shopper)
    say("web shop", f"{shopper.name} orders {SKU} (sneakers) for delivery: {order['orderNumber']}")
    thanks = _mail(shop, shopper.id, "thank_you")
    links = re.findall(r"/products/[A-Za-z0-9-]+", thanks["textBody"])
    check(links, f"the thank-you lists no products: {thanks['textBody']}")
    product = unwrap(shop.web().get(f"/v1/products/{links[0].split('/')[-1]}"), "product")
    check(product.get("id") and SKU not in str(product), f"not a complement of {SKU}: {product}")
    say(
        "notification",
        f"thank-you mail: {thanks['subject']} — {len(links)} products to go with it, "
        f"e.g. {product.get('title')}",
    )

    item = fulfilment(order)
    staff = shop.staff()
    base = f"/v1/orders/{order['id']}/fulfillments/{item['id']}"
    staff.post(f"{base}:pick", {"requestId": request_id()})
    staff.post(f"{base}:pack", {"requestId": request_id()})
    staff.post(
        f"{base}:ship",
        {
            "carrier": "yamato",
            "trackingNumber": f"YM-{order['orderNumber']}",
            "requestId": request_id(),
        },
    )
    for status in ("OUT_FOR_DELIVERY", "DELIVERED"):
        staff.post(
            f"{base}:updateDeliveryStatus",
            {"status": f"FULFILLMENT_STATUS_{status}", "requestId": request_id()},
        )
    say("staff", f"{item['number']} shipped and delivered")
    review = _mail(shop, shopper.id, "review_request")
    check(
        f"/orders/{order['orderNumber']}/review" in review["textBody"],
        f"the review request links no review page of the order: {review['textBody']}",
    )
    say("notification", f"review request to {shopper.email}: {review['subject']}")
    reviews = [m for m in shop.messages(shopper.id) if m["templateKey"] == "review_request"]
    if len(reviews) != 1:
        raise JourneyFailed(f"{len(reviews)} review requests for one delivery")

    # Click & collect: the review request follows the pickup instead.
    shopper.add(SKU)
    cart = shopper.fulfil("PICKUP", STORE)
    collected = shopper.settled(shopper.place_order(cart, "PAY_AT_STORE"))
    say(
        "web shop",
        f"{shopper.name} orders again, to collect in Shibuya: {collected['orderNumber']}",
    )
    item = fulfilment(collected)
    base = f"/v1/orders/{collected['id']}/fulfillments/{item['id']}"
    staff.post(f"{base}:markReadyForPickup", {"requestId": request_id()})
    code = eventually(
        lambda: fulfilment(shopper.order(collected["id"])).get("pickup", {}).get("pickupCode"),
        "the pickup code on her order page",
    )
    kiosk = shop.device("KIOSK", STORE)
    kiosk.api.post(f"{base}:confirmPickup", {"pickupCode": code, "requestId": request_id()})
    say(kiosk.label, f"{shopper.name} collects {item['number']} with her code")

    def review_of_pickup() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in shop.messages(shopper.id)
                if m["templateKey"] == "review_request"
                and f"/orders/{collected['orderNumber']}/review" in m.get("textBody", "")
                and m.get("status") == "MESSAGE_STATUS_SENT"
            ),
            None,
        )

    second = eventually(review_of_pickup, "the review request after the pickup")
    say("notification", f"review request for {collected['orderNumber']}: {second['subject']}")
