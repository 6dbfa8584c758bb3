"""Journeys through the stores: the app's cart continued on a kiosk (1), click & collect with
the SMS and the pickup code (2), a shoe lifted from the smart shelf, tried on at the smart
mirror and bought for same-day delivery (3)."""

from __future__ import annotations

import secrets
from typing import Any

from tenpo.devtools.demo.api import ApiError, request_id
from tenpo.devtools.demo.world import (
    EVENTUALLY,
    Device,
    JourneyFailed,
    Shop,
    check,
    eventually,
    record_try_on,
    unwrap,
)

STORE = "tokyo-shibuya"
#: The demo catalog's leather sneakers (red), size 25.0, and its JAN (the tag a device reads).
SKU = "SNK-0306-250"
SIZE = "25.0"
JAN = "4912345001078"
#: The demo retailer's GS1 company prefix within that JAN (7 digits: SGTIN partition 5).
COMPANY_PREFIX_DIGITS = 7
#: Her home, for deliveries (a Tokyo address the same-day area covers).
HOME = {
    "regionCode": "JP",
    "postalCode": "150-0041",
    "administrativeArea": "東京都",
    "locality": "渋谷区",
    "addressLines": ["神南1-2-3"],
    "recipient": "デモ 花子",
}


def sgtin96(jan: str, serial: int) -> str:
    """The SGTIN-96 RFID tag (GS1 TDS, hex) of one physical item of ``jan``: what a shelf or
    mirror reads. Unlike the JAN, it names this very pair (its serial)."""
    gtin = jan.zfill(14)
    company = int(gtin[1 : 1 + COMPANY_PREFIX_DIGITS])
    item = int(gtin[0] + gtin[1 + COMPANY_PREFIX_DIGITS : 13])  # indicator + item reference
    partition, company_bits, item_bits = 5, 24, 20
    value = 0x30  # header: SGTIN-96
    value = (value << 3) | 1  # filter: a point-of-sale item
    value = (value << 3) | partition
    value = (value << company_bits) | company
    value = (value << item_bits) | item
    value = (value << 38) | serial
    return f"{value:024x}"


def in_store(device: Device, skus: list[str]) -> list[str]:
    """Which of ``skus`` the device's store holds now (the inventory's read)."""
    found = device.api.get("/v1/availability", skus=skus, locationIds=device.store_id)
    return sorted(
        a["sku"]
        for a in found.get("availabilities", [])
        if int(a.get("locations", [{}])[0].get("availableToPromise", 0) or 0) > 0
    )


def fulfilment(order: dict[str, Any]) -> dict[str, Any]:
    fulfilments = order.get("fulfillments", [])
    check(len(fulfilments) == 1, f"one fulfilment expected, got {fulfilments}")
    return dict(fulfilments[0])


def app_cart_continued_on_kiosk(shop: Shop) -> None:
    """1. A cart begun in the app, continued on a kiosk after the hand-off."""
    say = shop.say
    shopper = shop.register("青木", "葵", app=True)
    cart = shopper.add(SKU)
    say("app", f"{shopper.name} puts {SKU} in her cart ({cart['totals']['total']['units']} JPY)")

    kiosk = shop.device("KIOSK", STORE)
    product = kiosk.api.get(f"/v1/barcodes/{JAN}")
    product = unwrap(product, "product")
    say(kiosk.label, f"scans JAN {JAN}: {product['title']}")
    here = kiosk.api.get("/v1/availability", skus=SKU, locationIds=STORE)
    stock = here["availabilities"][0]["locations"][0].get("availableToPromise", "0")
    say(kiosk.label, f"{stock} of {SKU} in this store")

    on_kiosk = kiosk.hand_off(shopper, say)
    kiosk_cart = on_kiosk.cart()
    check(kiosk_cart["id"] == cart["id"], f"the kiosk shows another cart: {kiosk_cart['id']}")
    check(
        [line["sku"] for line in kiosk_cart.get("lineItems", [])] == [SKU],
        f"her app's line is not on the kiosk: {kiosk_cart.get('lineItems')}",
    )
    say(kiosk.label, f"shows her cart from the app: {SKU} × 1")
    on_kiosk.add(SKU)
    say(kiosk.label, f"{shopper.name} adds a second pair on the kiosk")
    seen_in_app = shopper.cart()
    lines = seen_in_app.get("lineItems", [])
    check(
        sum(line["quantity"] for line in lines) == 2,
        f"the app does not see the kiosk's addition: {lines}",
    )
    say(
        "app",
        f"her phone shows the same cart: {SKU} × 2, {seen_in_app['totals']['total']['units']} JPY",
    )


def click_and_collect(shop: Shop) -> None:
    """2. Click & collect: ordered online, an SMS when it is ready, picked up with the code."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 2)
    shopper = shop.register("伊藤", "直子")
    shopper.set_phone("090-1111-2222")
    say("web shop", f"{shopper.name} adds her mobile number")
    shopper.add(SKU)
    cart = shopper.fulfil("PICKUP", STORE)
    order = shopper.settled(shopper.place_order(cart, "PAY_AT_STORE"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"order not placed: {order}")
    say(
        "web shop", f"orders {SKU} for pickup in Shibuya, paid at the store: {order['orderNumber']}"
    )
    confirmation = shop.message(shopper.id, "order_confirmation")
    say("notification", f"SMS to {confirmation['toAddress']}: {confirmation['textBody']}")

    with shopper.api.stream("/v1/stream/order", orderId=order["id"]) as live:
        live.wait_for(
            lambda e: unwrap(e, "order")["id"] == order["id"], EVENTUALLY, "the order stream"
        )
        say("web shop", "her order page follows the order live (SSE)")
        staff = shop.staff()
        work = staff.get(f"/v1/stores/{STORE}/fulfillments", pageSize=200)
        mine = [f for f in work.get("fulfillments", []) if f.get("orderId") == order["id"]]
        check(mine, f"{order['orderNumber']} is not on Shibuya's work list")
        item = mine[0]
        say("staff", f"Shibuya's work list has {item['number']} ({item['status']})")
        staff.post(
            f"/v1/orders/{order['id']}/fulfillments/{item['id']}:markReadyForPickup",
            {"requestId": request_id()},
        )
        say("staff", f"puts {item['number']} on the pickup shelf: ready")
        ready = live.wait_for(
            lambda e: (
                fulfilment(unwrap(e, "order"))["status"] == "FULFILLMENT_STATUS_READY_FOR_PICKUP"
            ),
            EVENTUALLY,
            "ready for pickup on her order page",
        )
        code = fulfilment(unwrap(ready, "order")).get("pickup", {}).get("pickupCode", "")
        check(len(code) == 8, f"no pickup code on her order page: {ready}")
        say("web shop", f"her order page turns to ready, with the pickup code {code} (no reload)")

        sms = shop.message(shopper.id, "ready_for_pickup")
        check(order["orderNumber"] in sms["textBody"], f"the SMS does not name the order: {sms}")
        check(code not in sms["textBody"], "the pickup code must never travel in an SMS")
        say("notification", f"SMS to {sms['toAddress']}: {sms['textBody']}")

        kiosk = shop.device("KIOSK", STORE)
        path = f"/v1/orders/{order['id']}/fulfillments/{item['id']}:confirmPickup"
        wrong = "BCDFGHJK" if code != "BCDFGHJK" else "CDFGHJKL"
        try:
            kiosk.api.post(path, {"pickupCode": wrong, "requestId": request_id()})
        except ApiError as error:
            check(error.reason == "PICKUP_CODE_MISMATCH", f"a wrong code: {error}")
            say(kiosk.label, f"a mistyped code is refused ({error.reason})")
        else:
            raise JourneyFailed("the kiosk accepted a wrong pickup code")
        kiosk.api.post(path, {"pickupCode": code, "requestId": request_id()})
        say(kiosk.label, f"{shopper.name} types {code}: handed over")
        done = live.wait_for(
            # Completed and paid: the capture at pickup may reach the page in a later update.
            lambda e: (
                unwrap(e, "order")["status"] == "ORDER_STATUS_COMPLETED"
                and unwrap(e, "order").get("paymentState") == "PAYMENT_STATE_CAPTURED"
            ),
            EVENTUALLY,
            "picked up and paid on her order page",
        )
    final = unwrap(done, "order")
    check(fulfilment(final)["status"] == "FULFILLMENT_STATUS_PICKED_UP", f"not picked up: {final}")
    check(final["paymentState"] == "PAYMENT_STATE_CAPTURED", f"not paid at pickup: {final}")
    say("web shop", f"{order['orderNumber']}: picked up, paid at the store, completed")


def mirror_try_on_same_day(shop: Shop) -> None:
    """3. The shelf recognises a lifted shoe and shows its sizes here; the mirror recognises
    the same pair, records try-ons, suggests sizes this store has; she buys in the fitting
    room and it is delivered home the same day from that store."""
    say = shop.say
    shop.receive_stock(STORE, SKU, 2)
    shopper = shop.register("中村", "美紀")
    # CreateAddress's body is the address itself.
    shopper.api.post(
        "/v1/customers/me/addresses",
        {"postalAddress": HOME, "label": "自宅", "defaultShipping": True},
        requestId=request_id(),
    )
    say("web shop", f"{shopper.name} keeps her home address in her account")

    # She lifts a pair from the smart shelf: its RFID tag leaves the shelf's antenna.
    pair = sgtin96(JAN, secrets.randbits(38))
    shelf = shop.device("SMART_SHELF", STORE)
    lifted = shelf.api.get(f"/v1/barcodes/{pair}")
    product = unwrap(lifted, "product")
    check(
        lifted.get("variant", {}).get("sku") == SKU,
        f"the shelf's tag {pair} is not {SKU}: {lifted.get('variant')}",
    )
    say(shelf.label, f"a pair is lifted: RFID {pair} is {product['title']}, size {SIZE}")
    scan = unwrap(
        shelf.api.post(
            "/v1/interactions",
            {"kind": "INTERACTION_KIND_SHELF_SCAN", "sku": SKU, "itemTag": pair},
            requestId=request_id(),
        ),
        "interaction",
    )
    check(not scan.get("customerId"), f"the shelf's pick-up is someone's already: {scan}")
    check(scan.get("storeId") == STORE, f"the pick-up is not Shibuya's: {scan}")
    say(shelf.label, "records the pick-up (anonymous: a shelf knows no one)")
    sizes = [v["sku"] for v in product.get("variants", [])]
    here = in_store(shelf, sizes)
    check(SKU in here, f"{SKU} is not shown as in this store: {here}")
    say(shelf.label, f"shows the sizes in stock here: {', '.join(here)}")

    mirror = shop.device("SMART_MIRROR", STORE)
    product = unwrap(mirror.api.get(f"/v1/barcodes/{pair}"), "product")
    say(mirror.label, f"reads the same pair's tag in the fitting room: {product['title']}")
    anonymous = record_try_on(mirror.api, SKU, SIZE, item_tag=pair)
    check(anonymous, "the anonymous try-on was not recorded")
    say(mirror.label, f"records a try-on of {SKU} (anonymous)")
    related = mirror.api.get(f"/v1/products/{product['id']}/related")
    suggestions = [r["product"] for r in related.get("related", []) if "product" in r]
    check(suggestions, f"the mirror has nothing to suggest with {product['title']}")
    here = in_store(mirror, sizes)
    check(SKU in here, f"{SKU} is not shown as in this store: {here}")
    say(mirror.label, f"sizes here: {', '.join(here)}")
    suggested = [v["sku"] for p in suggestions for v in p.get("variants", [])]
    here_too = set(in_store(mirror, suggested))
    say(
        mirror.label,
        "suggests "
        + "; ".join(
            f"{p['title']} ({sum(v['sku'] in here_too for v in p.get('variants', []))} sizes here)"
            for p in suggestions[:3]
        ),
    )

    on_mirror = mirror.hand_off(shopper, say)
    on_mirror.try_on(SKU, SIZE)
    say(mirror.label, f"records the try-on as {shopper.name}'s")
    on_mirror.add(SKU)
    cart = on_mirror.fulfil("SAME_DAY", STORE, HOME)
    order = on_mirror.settled(on_mirror.place_order(cart, "CARD"))
    check(order["status"] == "ORDER_STATUS_PLACED", f"order not placed: {order}")
    item = fulfilment(order)
    check(item["type"] == "FULFILLMENT_TYPE_SAME_DAY", f"not same day: {item}")
    check(item.get("storeId") == STORE, f"not from this store: {item}")
    window = item.get("promisedWindow", {})
    say(
        mirror.label,
        f"{shopper.name} buys in the fitting room: {order['orderNumber']}, same-day home "
        f"delivery from Shibuya ({window.get('startTime', '')[11:16]}–"
        f"{window.get('endTime', '')[11:16]} UTC)",
    )
    check(
        order.get("channel") == "CHANNEL_SMART_MIRROR",
        f"the order's channel: {order.get('channel')}",
    )

    staff = shop.staff()
    base = f"/v1/orders/{order['id']}/fulfillments/{item['id']}"
    staff.post(f"{base}:pick", {"requestId": request_id()})
    staff.post(f"{base}:pack", {"requestId": request_id()})
    staff.post(
        f"{base}:ship",
        {
            "carrier": "tenpo-bike",
            "trackingNumber": f"SD-{order['orderNumber']}",
            "requestId": request_id(),
        },
    )
    say("staff", f"Shibuya picks, packs and hands {item['number']} to the bike courier")
    for status in ("OUT_FOR_DELIVERY", "DELIVERED"):
        staff.post(
            f"{base}:updateDeliveryStatus",
            {"status": f"FULFILLMENT_STATUS_{status}", "requestId": request_id()},
        )
    delivered = eventually(
        lambda: (
            o if (o := shopper.order(order["id"]))["status"] == "ORDER_STATUS_COMPLETED" else None
        ),
        "the same-day order completed",
    )
    check(fulfilment(delivered)["status"] == "FULFILLMENT_STATUS_DELIVERED", f"{delivered}")
    say("web shop", f"{order['orderNumber']} delivered home the same day")
    timeline = staff.get(f"/v1/customers/{shopper.id}/interactions", pageSize=50)
    entries = timeline.get("interactions", [])
    kinds = [i.get("kind") for i in entries]
    check("INTERACTION_KIND_MIRROR_TRY_ON" in kinds, f"the try-on is not in her timeline: {kinds}")
    picked = [i for i in entries if i.get("kind") == "INTERACTION_KIND_SHELF_SCAN"]
    check(
        [(i.get("itemTag"), i.get("storeId")) for i in picked] == [(pair, STORE)],
        f"her pick-up at the shelf is not in her timeline: {entries}",
    )
    say(
        "staff",
        "her timeline shows the pick-up at the shelf and the mirror try-ons (the hand-off "
        "made the same pair's anonymous reads hers)",
    )
