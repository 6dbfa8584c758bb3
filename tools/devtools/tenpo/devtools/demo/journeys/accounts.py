"""Journeys of a customer's account: points earned in a store and spent online, the balance
live everywhere (7), customer service's 360° view across channels (9), consent, export and
erasure across every service (10)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tenpo.devtools.demo.api import ApiError, request_id
from tenpo.devtools.demo.journeys.stores import HOME, SIZE, SKU, STORE
from tenpo.devtools.demo.world import EVENTUALLY, JourneyFailed, Shop, check, eventually, unwrap

#: A purchase at the Shibuya till: 12,800 JPY earns 128 points (1 per 100 JPY, standard tier).
TILL_YEN = 12_800
TILL_POINTS = 128
SPEND_POINTS = 100


def points_in_store_spent_online(shop: Shop) -> None:
    """7. Points earned in a store, spent online, the balance updated everywhere at once."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 1)
    shopper = shop.register("井上", "千尋")
    kiosk = shop.device("KIOSK", STORE)
    on_kiosk = kiosk.hand_off(shopper, say)
    available = lambda e: int(unwrap(e, "balance").get("available", 0) or 0)  # noqa: E731
    with (
        shopper.api.stream("/v1/stream/loyalty-balance", customerId="me") as on_phone,
        on_kiosk.api.stream("/v1/stream/loyalty-balance", customerId="me") as in_store,
    ):
        for stream in (on_phone, in_store):
            stream.wait_for(lambda e: available(e) == 0, EVENTUALLY, "her balance of 0")
        say("web shop", "her account page shows 0 pt, live (SSE); so does the kiosk")
        receipt = f"pos-{STORE}-{uuid.uuid4().hex[:8]}"
        shop.staff().post(
            f"/v1/customers/{shopper.id}/loyalty:earn",
            {
                "amount": {"currencyCode": "JPY", "units": str(TILL_YEN)},
                "reference": receipt,
                "channel": "CHANNEL_POS",
                "storeId": STORE,
                "requestId": request_id(),
            },
        )
        say("pos shibuya", f"{shopper.name} pays {TILL_YEN} JPY at the till (receipt {receipt})")
        for label, stream in (("web shop", on_phone), (kiosk.label, in_store)):
            stream.wait_for(lambda e: available(e) == TILL_POINTS, EVENTUALLY, "the points earned")
            say(label, f"{TILL_POINTS} pt, without a reload")

        shopper.add(SKU)
        cart = shopper.fulfil("PICKUP", STORE)
        cart = shopper.update_cart(
            {"id": cart["id"], "loyaltyPointsToRedeem": str(SPEND_POINTS)}, "loyaltyPointsToRedeem"
        )
        check(int(cart["totals"].get("loyaltyPoints", 0)) == SPEND_POINTS, f"{cart['totals']}")
        order = shopper.settled(shopper.place_order(cart, "CARD"))
        check(order["status"] == "ORDER_STATUS_PLACED", f"{order}")
        check(int(order["totals"].get("loyaltyPoints", 0)) == SPEND_POINTS, f"{order['totals']}")
        say(
            "web shop",
            f"spends {SPEND_POINTS} pt online: {order['orderNumber']}, "
            f"{order['totals']['amountDue']['units']} JPY due",
        )
        left = TILL_POINTS - SPEND_POINTS
        for label, stream in (("web shop", on_phone), (kiosk.label, in_store)):
            stream.wait_for(lambda e: available(e) == left, EVENTUALLY, "the points spent")
            say(label, f"{left} pt, at once")
    overview = shop.staff().get(f"/v1/customers/{shopper.id}/overview")
    check(int(overview["loyalty"].get("available", 0)) == left, f"{overview['loyalty']}")
    say("staff", f"customer service sees {left} pt too")


def customer_service_360(shop: Shop) -> None:
    """9. Customer service sees the whole history across channels."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 2)
    shopper = shop.register("松本", "愛")
    shopper.add(SKU)
    web_order = shopper.settled(
        shopper.place_order(shopper.fulfil("PICKUP", STORE), "PAY_AT_STORE")
    )
    say("web shop", f"{shopper.name} orders online for pickup: {web_order['orderNumber']}")
    mirror = shop.device("SMART_MIRROR", STORE)
    on_mirror = mirror.hand_off(shopper, say)
    on_mirror.try_on(SKU, SIZE)
    say(mirror.label, f"records her try-on of {SKU}")
    on_mirror.add(SKU)
    store_order = on_mirror.settled(
        on_mirror.place_order(on_mirror.fulfil("CARRY_OUT", STORE), "CARD")
    )
    say(mirror.label, f"she buys it on the spot and carries it out: {store_order['orderNumber']}")

    staff = shop.staff()
    found = staff.get("/v1/customers:search", email=shopper.email)
    ids = [c["id"] for c in found.get("customers", [])]
    check(shopper.id in ids, f"customer service cannot find {shopper.email}: {found}")
    say("staff", f"customer service looks her up by e-mail: {shopper.name}")

    def complete() -> dict[str, Any] | None:
        view = staff.get(f"/v1/customers/{shopper.id}/overview")
        numbers = {o["orderNumber"]: o["channel"] for o in view.get("recentOrders", [])}
        kinds = {i["kind"] for i in view.get("recentInteractions", [])}
        wanted = {web_order["orderNumber"], store_order["orderNumber"]}
        return (
            view if wanted <= set(numbers) and "INTERACTION_KIND_MIRROR_TRY_ON" in kinds else None
        )

    view = eventually(complete, "both orders and the try-on in the 360° view")
    channels = {o["orderNumber"]: o["channel"] for o in view["recentOrders"]}
    check(channels[web_order["orderNumber"]] == "CHANNEL_WEB", f"{channels}")
    check(channels[store_order["orderNumber"]] == "CHANNEL_SMART_MIRROR", f"{channels}")
    say(
        "staff",
        "the 360° view: "
        + "; ".join(f"{n} on {c.removeprefix('CHANNEL_').lower()}" for n, c in channels.items())
        + "; the mirror try-on in her timeline",
    )
    history = staff.get("/v1/orders", customerId=shopper.id).get("orders", [])
    check({o["orderNumber"] for o in history} >= set(channels), f"{history}")
    say("staff", f"and her orders in the order service: {len(history)}, from every channel")


def consent_export_erasure(shop: Shop) -> None:
    """10. Consent, export and erasure across all services."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 1)
    shopper = shop.register("渡辺", "舞")
    shopper.set_phone("080-9999-0000")
    shopper.api.post(
        "/v1/customers/me/consents:grant",
        {
            "purpose": "CONSENT_PURPOSE_MARKETING",
            "channel": "CONSENT_CHANNEL_SMS",
            "wordingVersion": "marketing-sms-2026-04",
            "requestId": request_id(),
        },
    )
    shopper.api.post(
        "/v1/customers/me/consents:revoke",
        {
            "purpose": "CONSENT_PURPOSE_MARKETING",
            "channel": "CONSENT_CHANNEL_SMS",
            "wordingVersion": "marketing-sms-2026-04",
            "requestId": request_id(),
        },
    )
    history = shopper.api.get("/v1/customers/me/consentHistory")
    actions = [r.get("action") for r in history.get("records", [])]
    check(
        actions == ["CONSENT_ACTION_REVOKE", "CONSENT_ACTION_GRANT"],
        f"the grant and the revoke are not in her history, newest first: {history}",
    )
    say(
        "web shop",
        f"{shopper.name} grants SMS offers, then changes her mind: both are in her consent history",
    )
    shopper.add(SKU)
    order = shopper.settled(shopper.place_order(shopper.fulfil("DELIVERY", address=HOME), "CARD"))
    say("web shop", f"orders for delivery: {order['orderNumber']}")
    shop.message(shopper.id, "order_confirmation")
    say("notification", "sent her the order SMS")

    exported = json.loads(shopper.api.get("/v1/customers/me:export")["json"])
    check(
        shopper.email in json.dumps(exported, ensure_ascii=False), "her e-mail is not in her export"
    )
    tables = exported.get("tables", exported)
    say(
        "web shop", f"exports her data ({exported.get('service', '')}): {', '.join(sorted(tables))}"
    )

    shopper.api.post("/v1/customers/me:erase", {})
    say("web shop", f"{shopper.name} erases her account")
    try:
        shop.sign_in(shopper)
    except ApiError as error:
        say("web shop", f"her password no longer signs in ({error.status})")
    else:
        raise JourneyFailed("an erased customer could still sign in")
    staff = shop.staff()
    eventually(
        lambda: not unwrap(staff.get(f"/v1/orders/{order['id']}"), "order").get("contactEmail"),
        "her order pseudonymized",
    )
    kept = unwrap(staff.get(f"/v1/orders/{order['id']}"), "order")
    check(
        kept["totals"]["total"]["units"] == order["totals"]["total"]["units"], f"{kept['totals']}"
    )
    say("order", f"{order['orderNumber']} keeps its accounting record, without her contact details")
    eventually(
        lambda: all(
            not m.get("toAddress") and not m.get("textBody") for m in shop.messages(shopper.id)
        ),
        "her messages' addresses and bodies cleared",
    )
    say("notification", "the SMS it sent her keeps no number and no text")
    found = staff.get("/v1/orders:search", email=shopper.email).get("orders", [])
    check(found == [], f"her e-mail still finds orders: {found}")
    say("staff", "customer service can no longer find her orders by her e-mail")
    try:
        state = staff.get(f"/v1/customers/{shopper.id}").get("state", "")
    except ApiError as error:
        say("customer", f"her profile is gone ({error.reason or error.status})")
    else:
        check(state == "CUSTOMER_STATE_ERASED", f"her profile is {state}")
        say("customer", "her profile is erased")
