"""Promotions over gRPC: public and personal codes with clear refusals, Japanese totals with
discounts, and redemptions reserved, committed and released — exactly once under
contention."""

from __future__ import annotations

import asyncio

import grpc
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration
from google.type import money_pb2

from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import promotion_service_pb2 as papi
from tenpo.cart.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tenpo.kit.db import outbox_table
from tenpo.kit.grpc_errors import decode_error
from tests.services.cart.conftest import (
    Clients,
    Upstreams,
    anonymous_web,
    customer,
    expect_error,
    new_sku,
    service,
    staff,
)
from tests.services.conftest import Tokens


def yen(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="JPY", units=units)


async def create(cart: Clients, tokens: Tokens, promotion: pb.Promotion) -> pb.Promotion:
    promotion.active = True
    created = await cart.promotions.CreatePromotion(
        papi.CreatePromotionRequest(promotion=promotion),
        metadata=staff(tokens, "promotions:write"),
    )
    return created.promotion


async def test_only_promotion_managers_create_and_permission_comes_before_validation(
    cart: Clients, tokens: Tokens
) -> None:
    for metadata in (customer(tokens, "cust-p"), staff(tokens, "catalog:write")):
        await expect_error(
            cart.promotions.CreatePromotion(
                papi.CreatePromotionRequest(promotion=pb.Promotion()), metadata=metadata
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    error = await expect_error(
        cart.promotions.CreatePromotion(
            papi.CreatePromotionRequest(
                promotion=pb.Promotion(
                    title="x", trigger=pb.PROMOTION_TRIGGER_CODE, kind=pb.DISCOUNT_KIND_PERCENT
                )
            ),
            metadata=staff(tokens, "promotions:write"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PROMOTION_INVALID",
    )
    assert [v.field for v in error.field_violations] == ["promotion.percent_off"]


async def test_a_receipt_with_two_tax_rates_and_an_amount_off_code(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    """Hand-computed: 3,980 (10 %) + 2 × 1,280 (8 %) = 6,540; ¥500 off allocated 304 / 196
    (largest remainder); 10 %: 3,676 → tax floor(3676 × 10 / 110) = 334; 8 %: 2,364 → tax
    floor(2364 × 8 / 108) = 175; total 6,040."""
    shirt, tea = new_sku("SHIRT"), new_sku("TEA")
    upstreams.catalog.add(shirt, 3980)
    upstreams.catalog.add(tea, 1280, tax_rate=8)
    await create(
        cart,
        tokens,
        pb.Promotion(
            title="¥500 off",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            code="save500",
            kind=pb.DISCOUNT_KIND_AMOUNT,
            amount_off=yen(500),
        ),
    )
    app = customer(tokens, "cust-receipt")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=shirt), metadata=app)
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, sku=tea, quantity=2), metadata=app
    )
    done = await cart.carts.ApplyPromotionCode(
        api.ApplyPromotionCodeRequest(cart_id=mine.id, code=" Save500 "), metadata=app
    )
    c = done.cart
    assert c.promotion_codes == ["SAVE500"]
    assert [(li.sku, li.discount.units, li.total.units) for li in c.line_items] == [
        (shirt, 304, 3676),
        (tea, 196, 2364),
    ]
    t = c.totals
    assert (t.subtotal.units, t.discount.units, t.total.units) == (6540, 500, 6040)
    assert [(x.rate_percent, x.taxable_amount.units, x.tax_amount.units) for x in t.taxes] == [
        (10, 3676, 334),
        (8, 2364, 175),
    ]


async def test_codes_are_refused_with_reasons_that_never_reveal_another_customers_code(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 2000)
    promotion = await create(
        cart,
        tokens,
        pb.Promotion(
            title="Winter",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            code="WINTER10",
            kind=pb.DISCOUNT_KIND_PERCENT,
            percent_off=10,
            minimum_subtotal=yen(3000),
        ),
    )
    issued = await cart.promotions.IssuePersonalCode(
        papi.IssuePersonalCodeRequest(promotion_id=promotion.id, customer_id="cust-owner"),
        metadata=service(tokens, "promotions:write"),
    )
    assert len(issued.code) == 12 and not set(issued.code) & set("01OIL")
    other = customer(tokens, "cust-other")
    theirs = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=other)).cart
    for code in (issued.code, "NOSUCHCODE"):
        await expect_error(
            cart.carts.ApplyPromotionCode(
                api.ApplyPromotionCodeRequest(cart_id=theirs.id, code=code), metadata=other
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CODE_NOT_FOUND",
        )
    await expect_error(
        cart.carts.ApplyPromotionCode(
            api.ApplyPromotionCodeRequest(cart_id=theirs.id, code="!!"), metadata=other
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CODE_INVALID",
    )
    # A valid code whose condition is not met yet stays on the cart, with the reason.
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=theirs.id, sku=sku), metadata=other)
    pending = await cart.carts.ApplyPromotionCode(
        api.ApplyPromotionCodeRequest(cart_id=theirs.id, code="winter10"), metadata=other
    )
    assert [(r.code, r.reason) for r in pending.cart.rejected_codes] == [
        ("WINTER10", "MINIMUM_SUBTOTAL_NOT_REACHED")
    ]
    more = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=theirs.id, sku=sku), metadata=other
    )
    assert more.cart.totals.discount.units == 400 and not more.cart.rejected_codes


async def test_wrong_codes_are_rate_limited_per_principal(cart: Clients, tokens: Tokens) -> None:
    guessing = customer(tokens, "cust-guesser")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=guessing)).cart
    reasons = []
    for i in range(11):
        try:
            await cart.carts.ApplyPromotionCode(
                api.ApplyPromotionCodeRequest(cart_id=mine.id, code=f"GUESS{i:04d}"),
                metadata=guessing,
            )
        except grpc.aio.AioRpcError as error:
            reasons.append(decode_error(error).reason)
    assert reasons == ["CODE_NOT_FOUND"] * 10 + ["CODE_ATTEMPTS_EXCEEDED"]


async def test_a_personal_code_mailed_for_the_app_works_at_a_kiosk_and_redeems_once(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(
        sku, 10000, channels=frozenset({common_pb2.CHANNEL_APP, common_pb2.CHANNEL_KIOSK})
    )
    birthday = await create(
        cart,
        tokens,
        pb.Promotion(
            title="Birthday 20 %",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            kind=pb.DISCOUNT_KIND_PERCENT,
            percent_off=20,
        ),
    )
    issued = await cart.promotions.IssuePersonalCode(
        papi.IssuePersonalCodeRequest(
            promotion_id=birthday.id,
            customer_id="cust-bday",
            valid_for=Duration(seconds=48 * 3600),
            skus=[sku],
            request_id="bday-1",
        ),
        metadata=service(tokens, "promotions:write"),
    )
    kiosk = customer(tokens, "cust-bday", "KIOSK", store_id="tokyo-shibuya")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=kiosk)).cart
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=kiosk)
    applied = await cart.carts.ApplyPromotionCode(
        api.ApplyPromotionCodeRequest(cart_id=mine.id, code=issued.code.lower()), metadata=kiosk
    )
    assert applied.cart.totals.discount.units == 2000
    order = service(tokens, "promotions:redeem")
    etag = applied.cart.etag

    async def reserve(i: int) -> str:
        try:
            await cart.promotions.ReserveRedemptions(
                papi.ReserveRedemptionsRequest(cart_id=mine.id, etag=etag, order_id=f"order-{i}"),
                metadata=order,
                timeout=60,
            )
            return f"order-{i}"
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} {decode_error(error).reason}"

    outcomes = await asyncio.gather(*(reserve(i) for i in range(100)))
    winners = [o for o in outcomes if o.startswith("order-")]
    assert len(winners) == 1
    assert sorted(set(outcomes) - set(winners)) == ["FAILED_PRECONDITION CODE_ALREADY_USED"]
    # Released by a failed saga, the code can be reserved again; committed, never again.
    released = await cart.promotions.ReleaseRedemptions(
        papi.ReleaseRedemptionsRequest(order_id=winners[0]), metadata=order
    )
    assert [r.state for r in released.redemptions] == [pb.REDEMPTION_STATE_RELEASED]
    again = await cart.promotions.ReserveRedemptions(
        papi.ReserveRedemptionsRequest(cart_id=mine.id, etag=etag, order_id="order-final"),
        metadata=order,
    )
    assert [(r.code, r.amount.units) for r in again.redemptions] == [(issued.code, 2000)]
    committed = await cart.promotions.CommitRedemptions(
        papi.CommitRedemptionsRequest(order_id="order-final"), metadata=order
    )
    assert [r.state for r in committed.redemptions] == [pb.REDEMPTION_STATE_COMMITTED]
    await expect_error(
        cart.promotions.ReserveRedemptions(
            papi.ReserveRedemptionsRequest(cart_id=mine.id, etag=etag, order_id="order-late"),
            metadata=order,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CODE_ALREADY_USED",
    )
    async with cart.host.runtime.db.unit_of_work() as uow:  # type: ignore[union-attr]
        types = (await uow.session.execute(sa.select(outbox_table.c.event_type))).scalars().all()
    assert types.count("tenpo.cart.v1.PromotionRedeemed") == 1
    assert types.count("tenpo.cart.v1.PersonalCodeIssued") == 1


async def test_a_usage_limit_holds_across_customers_under_contention(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1000)
    await create(
        cart,
        tokens,
        pb.Promotion(
            title="First 3",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            code="FIRST3",
            kind=pb.DISCOUNT_KIND_AMOUNT,
            amount_off=yen(100),
            usage_limit=3,
        ),
    )
    order = service(tokens, "promotions:redeem")
    carts = []
    for i in range(12):
        who = customer(tokens, f"cust-limit-{i}")
        mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=who)).cart
        await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=who)
        done = await cart.carts.ApplyPromotionCode(
            api.ApplyPromotionCodeRequest(cart_id=mine.id, code="FIRST3"), metadata=who
        )
        carts.append(done.cart)

    async def reserve(i: int) -> str:
        try:
            await cart.promotions.ReserveRedemptions(
                papi.ReserveRedemptionsRequest(
                    cart_id=carts[i].id, etag=carts[i].etag, order_id=f"lim-{i}"
                ),
                metadata=order,
                timeout=60,
            )
            return "ok"
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason

    outcomes = await asyncio.gather(*(reserve(i) for i in range(12)))
    assert sorted(outcomes) == ["USAGE_LIMIT_REACHED"] * 9 + ["ok"] * 3


async def test_guests_cannot_use_personal_codes(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    promotion = await create(
        cart,
        tokens,
        pb.Promotion(
            title="Personal",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            kind=pb.DISCOUNT_KIND_PERCENT,
            percent_off=5,
        ),
    )
    issued = await cart.promotions.IssuePersonalCode(
        papi.IssuePersonalCodeRequest(promotion_id=promotion.id, customer_id="cust-someone"),
        metadata=staff(tokens, "promotions:write"),
    )
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    await expect_error(
        cart.carts.ApplyPromotionCode(
            api.ApplyPromotionCodeRequest(
                cart_id=guest.cart.id, cart_token=guest.cart_token, code=issued.code
            ),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CODE_NOT_FOUND",
    )


async def test_update_takes_a_mask_and_an_etag_and_list_pages(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    manager = staff(tokens, "promotions:write")
    created = await create(
        cart,
        tokens,
        pb.Promotion(
            title="Auto 5 %",
            trigger=pb.PROMOTION_TRIGGER_AUTOMATIC,
            kind=pb.DISCOUNT_KIND_PERCENT,
            percent_off=5,
        ),
    )
    sku = new_sku()
    upstreams.catalog.add(sku, 2000)
    app = customer(tokens, "cust-auto")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=app
    )
    assert added.cart.totals.discount.units == 100
    off = await cart.promotions.UpdatePromotion(
        papi.UpdatePromotionRequest(
            promotion=pb.Promotion(id=created.id, etag=created.etag, active=False),
            update_mask={"paths": ["active"]},
        ),
        metadata=manager,
    )
    assert not off.promotion.active and off.promotion.percent_off == 5
    after = await cart.carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
    assert after.cart.totals.discount.units == 0
    await expect_error(
        cart.promotions.UpdatePromotion(
            papi.UpdatePromotionRequest(
                promotion=pb.Promotion(id=created.id, etag=created.etag, title="again"),
                update_mask={"paths": ["title"]},
            ),
            metadata=manager,
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await expect_error(
        cart.promotions.UpdatePromotion(
            papi.UpdatePromotionRequest(
                promotion=pb.Promotion(id=created.id, percent_off=50),
                update_mask={"paths": ["percent_off"]},
            ),
            metadata=manager,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UPDATE_MASK_INVALID",
    )
    for i in range(3):
        await create(
            cart,
            tokens,
            pb.Promotion(
                title=f"P{i}",
                trigger=pb.PROMOTION_TRIGGER_CODE,
                kind=pb.DISCOUNT_KIND_PERCENT,
                percent_off=1,
                priority=10 + i,
            ),
        )
    seen, token = [], ""
    while True:
        page = await cart.promotions.ListPromotions(
            papi.ListPromotionsRequest(page_size=2, page_token=token), metadata=manager
        )
        seen.extend(p.title for p in page.promotions)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["Auto 5 %", "P0", "P1", "P2"]  # by priority, across pages


async def test_a_committed_personal_code_returned_for_an_unpaid_order_can_be_used_again(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 5000, channels=frozenset({common_pb2.CHANNEL_APP}))
    promotion = await create(
        cart,
        tokens,
        pb.Promotion(
            title="Welcome 10 %",
            trigger=pb.PROMOTION_TRIGGER_CODE,
            kind=pb.DISCOUNT_KIND_PERCENT,
            percent_off=10,
        ),
    )
    issued = await cart.promotions.IssuePersonalCode(
        papi.IssuePersonalCodeRequest(promotion_id=promotion.id, customer_id="cust-konbini"),
        metadata=service(tokens, "promotions:write"),
    )
    app = customer(tokens, "cust-konbini", "APP")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=app)
    etag = (
        await cart.carts.ApplyPromotionCode(
            api.ApplyPromotionCodeRequest(cart_id=mine.id, code=issued.code), metadata=app
        )
    ).cart.etag
    order = service(tokens, "promotions:redeem")
    await cart.promotions.ReserveRedemptions(
        papi.ReserveRedemptionsRequest(cart_id=mine.id, etag=etag, order_id="konbini-1"),
        metadata=order,
    )
    await cart.promotions.CommitRedemptions(
        papi.CommitRedemptionsRequest(order_id="konbini-1"), metadata=order
    )
    request = papi.ReturnRedemptionsRequest(
        order_id="konbini-1", reason="KONBINI_PAYMENT_EXPIRED", request_id="return-konbini-1"
    )
    # Only the order's saga (a service) or staff give uses back; a reason is a reason.
    await expect_error(
        cart.promotions.ReturnRedemptions(request, metadata=app), grpc.StatusCode.PERMISSION_DENIED
    )
    error = await expect_error(
        cart.promotions.ReturnRedemptions(
            papi.ReturnRedemptionsRequest(order_id="konbini-1", reason="expired!"),
            metadata=order,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_INVALID",
    )
    assert [v.field for v in error.field_violations] == ["reason"]

    returned = await cart.promotions.ReturnRedemptions(request, metadata=order)
    assert [r.state for r in returned.redemptions] == [pb.REDEMPTION_STATE_RETURNED]
    again = await cart.promotions.ReturnRedemptions(request, metadata=order)
    assert again == returned
    # The same request_id for another order is refused, not applied.
    await expect_error(
        cart.promotions.ReturnRedemptions(
            papi.ReturnRedemptionsRequest(
                order_id="konbini-2",
                reason="KONBINI_PAYMENT_EXPIRED",
                request_id=request.request_id,
            ),
            metadata=order,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    # The code counts as unused again: the next order of the same cart may redeem it.
    reserved = await cart.promotions.ReserveRedemptions(
        papi.ReserveRedemptionsRequest(cart_id=mine.id, etag=etag, order_id="konbini-2"),
        metadata=order,
    )
    assert [(r.code, r.state) for r in reserved.redemptions] == [
        (issued.code, pb.REDEMPTION_STATE_RESERVED)
    ]
