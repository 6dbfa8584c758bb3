"""Concurrent edits of one cart against real PostgreSQL, through two replicas: no lost
update, one active cart per customer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from services.cart.config import CartSettings
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.devtools.keys import DevKeys
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tests.services.cart.conftest import CartStub, Upstreams, customer, new_sku, start_cart
from tests.services.conftest import Tokens


@pytest_asyncio.fixture
async def replicas(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams
) -> AsyncIterator[list[CartStub]]:
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
            yield [CartStub(one), CartStub(two)]
    finally:
        for generator in generators:
            await generator.aclose()


async def test_concurrent_adds_of_one_sku_from_two_touchpoints_never_lose_an_update(
    replicas: list[CartStub], upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku("HOT")
    upstreams.catalog.add(sku, 1000)
    app, web = customer(tokens, "cust-race", "APP"), customer(tokens, "cust-race", "WEB")
    mine = (await replicas[0].GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart

    async def add(i: int) -> None:
        await replicas[i % 2].AddLineItem(
            api.AddLineItemRequest(cart_id=mine.id, sku=sku, quantity=1, request_id=f"r{i}"),
            metadata=app if i % 2 else web,
            timeout=60,
        )

    await asyncio.gather(*(add(i) for i in range(40)))
    final = await replicas[0].GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
    assert [(li.sku, li.quantity) for li in final.cart.line_items] == [(sku, 40)]
    assert final.cart.etag == str(int(mine.etag) + 40)


async def test_concurrent_edits_with_one_etag_let_exactly_one_through(
    replicas: list[CartStub], upstreams: Upstreams, tokens: Tokens
) -> None:
    skus = [new_sku() for _ in range(10)]
    for sku in skus:
        upstreams.catalog.add(sku, 100)
    app = customer(tokens, "cust-etag-race")
    mine = (await replicas[0].GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart

    async def add(i: int) -> str:
        try:
            await replicas[i % 2].AddLineItem(
                api.AddLineItemRequest(cart_id=mine.id, sku=skus[i], etag=mine.etag),
                metadata=app,
                timeout=60,
            )
            return "ok"
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason

    outcomes = await asyncio.gather(*(add(i) for i in range(10)))
    assert sorted(outcomes) == ["ETAG_MISMATCH"] * 9 + ["ok"]
    final = await replicas[1].GetCart(api.GetCartRequest(cart_id=mine.id), metadata=app)
    assert len(final.cart.line_items) == 1


async def test_concurrent_first_uses_make_one_active_cart(
    replicas: list[CartStub], tokens: Tokens
) -> None:
    app = customer(tokens, "cust-first-use")
    carts = await asyncio.gather(
        *(
            replicas[i % 2].GetActiveCart(api.GetActiveCartRequest(), metadata=app, timeout=60)
            for i in range(20)
        )
    )
    assert len({c.cart.id for c in carts}) == 1
