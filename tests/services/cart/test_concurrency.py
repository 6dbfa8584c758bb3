"""Concurrent edits of one cart against real PostgreSQL, through two replicas: no lost
update, one active cart per customer, one wrong-code limit per caller."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from services.cart.config import CartSettings
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import promotion_service_pb2 as papi
from tenpo.cart.v1 import resources_pb2 as pb
from tenpo.devtools.keys import DevKeys
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tests.services.cart.conftest import (
    CartStub,
    Clients,
    PromotionStub,
    Upstreams,
    customer,
    new_sku,
    staff,
    start_cart,
)
from tests.services.conftest import Tokens


@pytest_asyncio.fixture
async def replicas(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams
) -> AsyncIterator[list[Clients]]:
    hosts: list[ServiceHost[CartSettings]] = []
    generators = [
        start_cart(database_url, nats_url, dev_keys, upstreams, max_quantity_per_line=100)
        for _ in range(2)
    ]
    for generator in generators:
        hosts.append(await generator.__anext__())
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{hosts[0].port}") as one,
            grpc.aio.insecure_channel(f"127.0.0.1:{hosts[1].port}") as two,
        ):
            yield [
                Clients(CartStub(one), PromotionStub(one), hosts[0]),
                Clients(CartStub(two), PromotionStub(two), hosts[1]),
            ]
    finally:
        for generator in generators:
            await generator.aclose()


async def test_concurrent_adds_of_one_sku_from_two_touchpoints_never_lose_an_update(
    replicas: list[Clients], upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku("HOT")
    upstreams.catalog.add(sku, 1000)
    app, web = customer(tokens, "cust-race", "APP"), customer(tokens, "cust-race", "WEB")
    mine = (await replicas[0].carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart

    async def add(i: int) -> None:
        await replicas[i % 2].carts.AddLineItem(
            api.AddLineItemRequest(cart_id=mine.id, sku=sku, quantity=1, request_id=f"r{i}"),
            metadata=app if i % 2 else web,
            timeout=60,
        )

    await asyncio.gather(*(add(i) for i in range(40)))
    final = await replicas[0].carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
    assert [(li.sku, li.quantity) for li in final.cart.line_items] == [(sku, 40)]
    assert final.cart.etag == str(int(mine.etag) + 40)


async def test_concurrent_edits_with_one_etag_let_exactly_one_through(
    replicas: list[Clients], upstreams: Upstreams, tokens: Tokens
) -> None:
    skus = [new_sku() for _ in range(10)]
    for sku in skus:
        upstreams.catalog.add(sku, 100)
    app = customer(tokens, "cust-etag-race")
    mine = (await replicas[0].carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart

    async def add(i: int) -> str:
        try:
            await replicas[i % 2].carts.AddLineItem(
                api.AddLineItemRequest(cart_id=mine.id, sku=skus[i], etag=mine.etag),
                metadata=app,
                timeout=60,
            )
            return "ok"
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason

    outcomes = await asyncio.gather(*(add(i) for i in range(10)))
    assert sorted(outcomes) == ["ETAG_MISMATCH"] * 9 + ["ok"]
    final = await replicas[1].carts.GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
    assert len(final.cart.line_items) == 1


async def test_concurrent_first_uses_make_one_active_cart(
    replicas: list[Clients], tokens: Tokens
) -> None:
    app = customer(tokens, "cust-first-use")
    carts = await asyncio.gather(
        *(
            replicas[i % 2].carts.GetActiveCart(
                api.GetActiveCartRequest(), metadata=app, timeout=60
            )
            for i in range(20)
        )
    )
    assert len({c.cart.id for c in carts}) == 1


async def test_wrong_codes_from_two_replicas_at_once_share_one_limit_and_reveal_nothing(
    replicas: list[Clients], tokens: Tokens
) -> None:
    """30 wrong codes at once, alternating between two replicas on one database: exactly
    the limit (10) are judged, the rest refused; after that, a code that exists gets the
    same answer as one that does not, on either replica."""
    guessing = customer(tokens, "cust-guess-two-replicas")
    mine = (
        await replicas[0].carts.GetActiveCart(api.GetActiveCartRequest(), metadata=guessing)
    ).cart
    real = await replicas[1].promotions.CreatePromotion(
        papi.CreatePromotionRequest(
            promotion=pb.Promotion(
                title="real",
                trigger=pb.PROMOTION_TRIGGER_CODE,
                kind=pb.DISCOUNT_KIND_PERCENT,
                percent_off=5,
                code=f"REAL-{uuid.uuid4().hex[:8]}",
                active=True,
            )
        ),
        metadata=staff(tokens, "promotions:write"),
    )

    async def guess(i: int, code: str) -> str:
        try:
            await replicas[i % 2].carts.ApplyPromotionCode(
                api.ApplyPromotionCodeRequest(cart_id=mine.id, code=code),
                metadata=guessing,
                timeout=60,
            )
            return "applied"
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason

    outcomes = await asyncio.gather(*(guess(i, f"GUESS{i:04d}") for i in range(30)))
    assert sorted(outcomes) == ["CODE_ATTEMPTS_EXCEEDED"] * 20 + ["CODE_NOT_FOUND"] * 10
    after = [await guess(i, code) for i, code in enumerate((real.promotion.code, "NOPE0000"))]
    assert after == ["CODE_ATTEMPTS_EXCEEDED"] * 2
    # Someone else's limit is their own.
    other = customer(tokens, "cust-not-guessing")
    theirs = (
        await replicas[1].carts.GetActiveCart(api.GetActiveCartRequest(), metadata=other)
    ).cart
    applied = await replicas[0].carts.ApplyPromotionCode(
        api.ApplyPromotionCodeRequest(cart_id=theirs.id, code=real.promotion.code), metadata=other
    )
    assert list(applied.cart.promotion_codes) == [real.promotion.code]
