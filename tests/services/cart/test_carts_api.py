"""Carts over gRPC: guest capability, one active cart across touchpoints, catalog prices,
limits, etags, request ids, merge, availability and checkout."""

from __future__ import annotations

import grpc

from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tests.services.cart.conftest import (
    Clients,
    Upstreams,
    anonymous_web,
    customer,
    expect_error,
    new_sku,
    service,
)
from tests.services.conftest import Tokens


async def guest_cart(
    cart: Clients, metadata: tuple[tuple[str, str], ...] | None = None
) -> tuple[pb.Cart, str]:
    metadata = metadata or anonymous_web()
    created = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=metadata)
    assert created.cart_token
    return created.cart, created.cart_token


async def test_guest_cart_is_reachable_only_with_its_token(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 3300)
    mine, token = await guest_cart(cart)
    _, other_token = await guest_cart(cart)
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=1),
        metadata=anonymous_web(),
    )
    assert len(added.cart.line_items) == 1
    for metadata, presented in (
        (anonymous_web(), ""),
        (anonymous_web(), other_token),
        (customer(tokens, "cust-x"), ""),
    ):
        await expect_error(
            cart.carts.GetCart(
                api.GetCartRequest(cart_id=mine.id, cart_token=presented), metadata=metadata
            ),
            grpc.StatusCode.NOT_FOUND,
            "CART_NOT_FOUND",
        )
    got = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=mine.id, cart_token=token), metadata=anonymous_web()
    )
    assert got.cart.id == mine.id and not got.cart.customer_id
    # A service relaying a guest (the order service) shows her token: checked like hers.
    reader = service(tokens, "carts:read")
    await expect_error(
        cart.carts.GetCart(
            api.GetCartRequest(cart_id=mine.id, cart_token=other_token), metadata=reader
        ),
        grpc.StatusCode.NOT_FOUND,
        "CART_NOT_FOUND",
    )
    relayed = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=mine.id, cart_token=token), metadata=reader
    )
    assert relayed.cart.id == mine.id
    assert (await cart.carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=reader)).cart


async def test_lines_take_title_image_and_price_from_the_catalog_and_totals_are_computed(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 3300, title="キャンバススニーカー")
    upstreams.inventory.stock[sku] = 5
    mine, token = await guest_cart(cart)
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=2),
        metadata=anonymous_web(),
    )
    line = added.cart.line_items[0]
    assert (line.title, line.unit_price.units, line.subtotal.units) == (
        "キャンバススニーカー",
        3300,
        6600,
    )
    assert line.image_url.endswith(f"{sku}.jpg")
    assert line.channel == common_pb2.CHANNEL_WEB
    assert line.availability == pb.AVAILABILITY_AVAILABLE and line.available_quantity == 5
    totals = added.cart.totals
    assert (totals.subtotal.units, totals.total.units, totals.shipping.units) == (6600, 6600, 0)
    assert [(t.rate_percent, t.taxable_amount.units, t.tax_amount.units) for t in totals.taxes] == [
        (10, 6600, 600)
    ]
    assert totals.subtotal.currency_code == "JPY" and totals.subtotal.nanos == 0


async def test_a_sku_not_offered_on_the_channel_is_refused_and_nothing_changes(
    cart: Clients, upstreams: Upstreams
) -> None:
    store_only = new_sku("STORE")
    upstreams.catalog.add(store_only, 5000, channels=frozenset({common_pb2.CHANNEL_KIOSK}))
    mine, token = await guest_cart(cart)
    await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=store_only),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SKU_NOT_OFFERED",
    )
    after = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=mine.id, cart_token=token), metadata=anonymous_web()
    )
    assert not after.cart.line_items and after.cart.etag == mine.etag


async def test_one_active_cart_follows_the_customer_from_app_to_a_handed_off_kiosk(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    shoes, socks = new_sku("SHOE"), new_sku("SOCK")
    everywhere = frozenset({common_pb2.CHANNEL_APP, common_pb2.CHANNEL_KIOSK})
    upstreams.catalog.add(shoes, 12100, channels=everywhere)
    upstreams.catalog.add(socks, 1100, channels=everywhere)
    app = customer(tokens, "cust-hana", "APP")
    kiosk = customer(
        tokens, "cust-hana", "KIOSK", store_id="tokyo-shibuya", extra_claims={"dev": "kiosk-7"}
    )
    on_phone = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=on_phone.id, sku=shoes), metadata=app
    )
    in_store = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=kiosk)).cart
    assert in_store.id == on_phone.id
    assert [li.sku for li in in_store.line_items] == [shoes]
    # CreateCart from a customer is the same active cart, never a second one.
    created = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=kiosk)
    assert created.cart.id == on_phone.id and not created.cart_token
    both = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=in_store.id, sku=socks, quantity=2), metadata=kiosk
    )
    where = {li.sku: (li.channel, li.store_id) for li in both.cart.line_items}
    assert where == {
        shoes: (common_pb2.CHANNEL_APP, ""),
        socks: (common_pb2.CHANNEL_KIOSK, "tokyo-shibuya"),
    }
    assert both.cart.channel == common_pb2.CHANNEL_KIOSK


async def test_another_customer_or_a_device_on_its_own_never_sees_a_customer_cart(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    owner = customer(tokens, "cust-a")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=owner)).cart
    for metadata in (customer(tokens, "cust-b"), tokens.device("KIOSK", "tokyo-shibuya")):
        await expect_error(
            cart.carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=metadata),
            grpc.StatusCode.NOT_FOUND,
            "CART_NOT_FOUND",
        )
        await expect_error(
            cart.carts.AddLineItem(
                api.AddLineItemRequest(cart_id=mine.id, sku="X-1"), metadata=metadata
            ),
            grpc.StatusCode.NOT_FOUND,
            "CART_NOT_FOUND",
        )
    await expect_error(
        cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=anonymous_web()),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_a_stale_etag_is_aborted_and_changes_nothing(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    a, b = new_sku(), new_sku()
    upstreams.catalog.add(a, 1000)
    upstreams.catalog.add(b, 2000)
    app = customer(tokens, "cust-etag")
    seen = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    first = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=seen.id, sku=a, etag=seen.etag), metadata=app
    )
    await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=seen.id, sku=b, etag=seen.etag), metadata=app
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    now = await cart.carts.GetCart(api.GetCartRequest(cart_id=seen.id), metadata=app)
    assert [li.sku for li in now.cart.line_items] == [a]
    assert now.cart.etag == first.cart.etag


async def test_a_retried_request_id_applies_once_and_a_reused_one_is_refused(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 500)
    mine, token = await guest_cart(cart)
    request = api.AddLineItemRequest(
        cart_id=mine.id, cart_token=token, sku=sku, quantity=2, request_id="add-1"
    )
    await cart.carts.AddLineItem(request, metadata=anonymous_web())
    again = await cart.carts.AddLineItem(request, metadata=anonymous_web())
    assert again.cart.line_items[0].quantity == 2
    request.quantity = 3
    await expect_error(
        cart.carts.AddLineItem(request, metadata=anonymous_web()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_a_retry_whose_change_cannot_apply_again_answers_the_cart(
    cart: Clients, upstreams: Upstreams
) -> None:
    """Found from outside: a retried RemoveLineItem (its answer lost) was 404
    LINE_ITEM_NOT_FOUND, and a retried add that the first one filled up to the per-line
    limit LINE_QUANTITY_LIMIT — the change was decided again on the cart this replica
    knew before its request_id was looked up. A retry answers the cart as it is now."""
    sku = new_sku()
    upstreams.catalog.add(sku, 500)
    mine, token = await guest_cart(cart)
    add = api.AddLineItemRequest(
        cart_id=mine.id, cart_token=token, sku=sku, quantity=10, request_id="fill-1"
    )
    first = await cart.carts.AddLineItem(add, metadata=anonymous_web())
    again = await cart.carts.AddLineItem(add, metadata=anonymous_web())
    assert again.cart.line_items[0].quantity == 10
    assert again.cart.etag == first.cart.etag
    remove = api.RemoveLineItemRequest(
        cart_id=mine.id,
        cart_token=token,
        line_item_id=first.cart.line_items[0].id,
        request_id="remove-1",
    )
    removed = await cart.carts.RemoveLineItem(remove, metadata=anonymous_web())
    retried = await cart.carts.RemoveLineItem(remove, metadata=anonymous_web())
    assert list(retried.cart.line_items) == []
    assert retried.cart.etag == removed.cart.etag
    # Another request_id for the line that is gone is still refused.
    remove.request_id = "remove-2"
    await expect_error(
        cart.carts.RemoveLineItem(remove, metadata=anonymous_web()),
        grpc.StatusCode.NOT_FOUND,
        "LINE_ITEM_NOT_FOUND",
    )


async def test_per_line_quantity_limits(cart: Clients, upstreams: Upstreams) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 500)
    mine, token = await guest_cart(cart)
    await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=11),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "QUANTITY_INVALID",
    )
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=6),
        metadata=anonymous_web(),
    )
    await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=6),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LINE_QUANTITY_LIMIT",
    )
    line = added.cart.line_items[0]
    updated = await cart.carts.UpdateLineItem(
        api.UpdateLineItemRequest(
            cart_id=mine.id, cart_token=token, line_item=pb.LineItem(id=line.id, quantity=10)
        ),
        metadata=anonymous_web(),
    )
    assert updated.cart.line_items[0].quantity == 10
    await expect_error(
        cart.carts.UpdateLineItem(
            api.UpdateLineItemRequest(
                cart_id=mine.id, cart_token=token, line_item=pb.LineItem(id=line.id, quantity=11)
            ),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "QUANTITY_INVALID",
    )
    removed = await cart.carts.RemoveLineItem(
        api.RemoveLineItemRequest(cart_id=mine.id, cart_token=token, line_item_id=line.id),
        metadata=anonymous_web(),
    )
    assert not removed.cart.line_items


async def test_availability_is_checked_for_the_fulfilment_and_unknown_when_inventory_is_down(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 4400)
    upstreams.inventory.stock[sku] = 1
    mine, token = await guest_cart(cart)
    upstreams.inventory.down = True
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=2),
        metadata=anonymous_web(),
    )
    assert added.cart.line_items[0].availability == pb.AVAILABILITY_UNKNOWN
    assert added.cart.totals.total.units == 8800  # the cart works without inventory
    upstreams.inventory.down = False
    pickup = await cart.carts.UpdateCart(
        api.UpdateCartRequest(
            cart=pb.Cart(
                id=mine.id,
                fulfillment=pb.Fulfillment(
                    method=pb.FULFILLMENT_METHOD_PICKUP, store_id="tokyo-shibuya"
                ),
            ),
            cart_token=token,
        ),
        metadata=anonymous_web(),
    )
    line = pickup.cart.line_items[0]
    assert (line.availability, line.available_quantity) == (pb.AVAILABILITY_INSUFFICIENT, 1)
    await expect_error(
        cart.carts.UpdateCart(
            api.UpdateCartRequest(
                cart=pb.Cart(
                    id=mine.id, fulfillment=pb.Fulfillment(method=pb.FULFILLMENT_METHOD_PICKUP)
                ),
                cart_token=token,
            ),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FULFILLMENT_INVALID",
    )


async def test_delivery_fee_until_the_free_threshold(cart: Clients, upstreams: Upstreams) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 2200)
    mine, token = await guest_cart(cart)
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku), metadata=anonymous_web()
    )
    address = common_pb2.PostalAddress(
        region_code="JP", postal_code="150-0041", address_lines=["神南1-2-3"]
    )
    delivered = await cart.carts.UpdateCart(
        api.UpdateCartRequest(
            cart=pb.Cart(
                id=mine.id,
                fulfillment=pb.Fulfillment(method=pb.FULFILLMENT_METHOD_DELIVERY, address=address),
            ),
            cart_token=token,
            update_mask={"paths": ["fulfillment"]},
        ),
        metadata=anonymous_web(),
    )
    totals = delivered.cart.totals
    # 2,200 + 550 shipping = 2,750, all at 10 %: floor(2750 × 10 / 110) = 250.
    assert (totals.shipping.units, totals.total.units) == (550, 2750)
    assert [(t.rate_percent, t.tax_amount.units) for t in totals.taxes] == [(10, 250)]
    more = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku, quantity=2),
        metadata=anonymous_web(),
    )
    assert (more.cart.totals.shipping.units, more.cart.totals.total.units) == (0, 6600)


async def test_a_price_change_is_applied_and_flagged_until_the_next_change(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku, other = new_sku(), new_sku()
    upstreams.catalog.add(sku, 3000)
    upstreams.catalog.add(other, 100)
    mine, token = await guest_cart(cart)
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=sku), metadata=anonymous_web()
    )
    upstreams.catalog.products[sku].price = 2500
    # What the catalog's PriceChanged consumer does.
    carts = cart.host.runtime.parts["carts"]  # type: ignore[union-attr]
    async with cart.host.runtime.db.unit_of_work() as uow:  # type: ignore[union-attr]
        await carts.catalog_changed(uow, [sku])
        await uow.commit()
    seen = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=mine.id, cart_token=token), metadata=anonymous_web()
    )
    line = seen.cart.line_items[0]
    assert (line.unit_price.units, line.previous_unit_price.units) == (2500, 3000)
    assert line.price_changed and seen.cart.has_price_changes
    assert seen.cart.totals.total.units == 2500
    assert seen.cart.etag != mine.etag
    changed = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=other),
        metadata=anonymous_web(),
    )
    assert not changed.cart.has_price_changes


async def test_guest_cart_merges_into_the_customer_cart_at_sign_in(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    a, b = new_sku("A"), new_sku("B")
    upstreams.catalog.add(a, 1000)
    upstreams.catalog.add(b, 2000)
    guest, token = await guest_cart(cart)
    for sku, quantity in ((a, 3), (b, 1)):
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.id, cart_token=token, sku=sku, quantity=quantity),
            metadata=anonymous_web(),
        )
    signed_in = customer(tokens, "cust-merge", "WEB")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=signed_in)).cart
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, sku=a, quantity=9), metadata=signed_in
    )
    merged = await cart.carts.MergeCart(
        api.MergeCartRequest(guest_cart_id=guest.id, guest_cart_token=token), metadata=signed_in
    )
    assert merged.cart.id == mine.id
    assert [(li.sku, li.quantity) for li in merged.cart.line_items] == [(a, 10), (b, 1)]
    again = await cart.carts.MergeCart(
        api.MergeCartRequest(guest_cart_id=guest.id, guest_cart_token=token), metadata=signed_in
    )
    assert [(li.sku, li.quantity) for li in again.cart.line_items] == [(a, 10), (b, 1)]
    folded = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=guest.id, cart_token=token), metadata=anonymous_web()
    )
    assert folded.cart.status == pb.CART_STATUS_MERGED
    await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.id, cart_token=token, sku=a),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CART_NOT_ACTIVE",
    )
    await expect_error(
        cart.carts.MergeCart(
            api.MergeCartRequest(guest_cart_id=guest.id, guest_cart_token="wrong"),
            metadata=signed_in,
        ),
        grpc.StatusCode.NOT_FOUND,
        "CART_NOT_FOUND",
    )


async def test_checkout_closes_the_cart_for_the_version_the_order_priced(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1500)
    app = customer(tokens, "cust-checkout")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=app
    )
    order = service(tokens, "carts:checkout")
    await expect_error(
        cart.carts.CheckoutCart(
            api.CheckoutCartRequest(cart_id=mine.id, etag=added.cart.etag, order_id="o-1"),
            metadata=app,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        cart.carts.CheckoutCart(
            api.CheckoutCartRequest(cart_id=mine.id, etag=mine.etag, order_id="o-1"),
            metadata=order,
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    closed = await cart.carts.CheckoutCart(
        api.CheckoutCartRequest(
            cart_id=mine.id, etag=added.cart.etag, order_id="o-1", request_id="co-1"
        ),
        metadata=order,
    )
    assert closed.cart.status == pb.CART_STATUS_CHECKED_OUT and closed.cart.order_id == "o-1"
    fresh = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    assert fresh.id != mine.id and not fresh.line_items


async def test_a_change_asks_inventory_about_the_lines_it_changes(
    cart: Clients, upstreams: Upstreams
) -> None:
    """Within CART_AVAILABILITY_RECHECK_SECONDS (30) of the last full answer, a change asks
    about the lines it adds or resizes; the other lines keep their last answer."""
    a, b = new_sku(), new_sku()
    upstreams.catalog.add(a, 100)
    upstreams.catalog.add(b, 200)
    upstreams.inventory.stock.update({a: 5, b: 7})
    mine, token = await guest_cart(cart)
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=a), metadata=anonymous_web()
    )
    upstreams.inventory.stock[a] = 1
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, cart_token=token, sku=b), metadata=anonymous_web()
    )
    by_sku = {li.sku: li for li in added.cart.line_items}
    assert (by_sku[a].availability, by_sku[a].available_quantity) == (
        pb.AVAILABILITY_AVAILABLE,
        5,
    )
    assert (by_sku[b].availability, by_sku[b].available_quantity) == (
        pb.AVAILABILITY_AVAILABLE,
        7,
    )
    resized = await cart.carts.UpdateLineItem(
        api.UpdateLineItemRequest(
            cart_id=mine.id, cart_token=token, line_item=pb.LineItem(id=by_sku[a].id, quantity=2)
        ),
        metadata=anonymous_web(),
    )
    line = next(li for li in resized.cart.line_items if li.sku == a)
    assert (line.availability, line.available_quantity) == (pb.AVAILABILITY_INSUFFICIENT, 1)
