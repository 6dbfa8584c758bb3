"""Abandonment: announced once per idle period, durable, safe with concurrent sweepers;
old guest carts expire; ended wrong-code windows are forgotten."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa

from services.cart.models import code_attempts
from services.cart.usecases.abandonment import Abandonment
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.cart.v1 import events_pb2
from tenpo.cart.v1 import resources_pb2 as pb
from tenpo.kit.db import outbox_table
from tests.services.cart.conftest import (
    Clients,
    Upstreams,
    anonymous_web,
    customer,
    new_sku,
)
from tests.services.conftest import Tokens


async def abandoned_events(cart: Clients) -> list[events_pb2.CartAbandoned]:
    async with cart.host.runtime.db.unit_of_work() as uow:  # type: ignore[union-attr]
        payloads = (
            await uow.session.execute(
                sa.select(outbox_table.c.payload)
                .where(outbox_table.c.event_type == "tenpo.cart.v1.CartAbandoned")
                .order_by(outbox_table.c.seq)
            )
        ).scalars()
        return [events_pb2.CartAbandoned.FromString(p) for p in payloads]


def sweeper(cart: Clients, at: datetime) -> Abandonment:
    runtime = cart.host.runtime
    assert runtime is not None
    return Abandonment(
        runtime.db,
        runtime.parts["carts"],
        idle=timedelta(hours=1),
        guest_expiry=timedelta(days=30),
        clock=lambda: at,
    )


async def test_an_idle_cart_is_announced_once_per_idle_period_by_concurrent_sweepers(
    cart: Clients, upstreams: Upstreams, tokens: Tokens
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 4000)
    app = customer(tokens, "cust-idle")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=app)).cart
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=mine.id, sku=sku, quantity=2), metadata=app
    )
    # A guest cart without an e-mail is nobody to remind; one with an e-mail is.
    anonymous = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    reachable = await cart.carts.CreateCart(
        api.CreateCartRequest(contact_email="hana@example.jp"), metadata=anonymous_web()
    )
    for guest in (anonymous, reachable):
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=sku),
            metadata=anonymous_web(),
        )
    later = datetime.now(UTC) + timedelta(hours=2)
    await asyncio.gather(*(sweeper(cart, later).sweep_once() for _ in range(4)))
    await sweeper(cart, later).sweep_once()
    events = await abandoned_events(cart)
    assert sorted(e.cart_id for e in events) == sorted([mine.id, reachable.cart.id])
    mine_event = next(e for e in events if e.cart_id == mine.id)
    assert mine_event.customer_id == "cust-idle" and mine_event.total.units == 8000
    assert [(line.sku, line.quantity) for line in mine_event.lines] == [(sku, 2)]
    guest_event = next(e for e in events if e.cart_id == reachable.cart.id)
    assert guest_event.has_contact_email and "hana" not in str(guest_event)
    # A change starts a new idle period: announced once more, later.
    await cart.carts.AddLineItem(api.AddLineItemRequest(cart_id=mine.id, sku=sku), metadata=app)
    changed_at = datetime.now(UTC)
    await sweeper(cart, changed_at + timedelta(minutes=30)).sweep_once()
    assert len(await abandoned_events(cart)) == 2  # idle for less than the hour
    await sweeper(cart, changed_at + timedelta(hours=2)).sweep_once()
    assert [e.cart_id for e in await abandoned_events(cart)].count(mine.id) == 2


async def test_old_guest_carts_expire(cart: Clients) -> None:
    guest = await cart.carts.CreateCart(
        api.CreateCartRequest(contact_email="guest@example.jp"), metadata=anonymous_web()
    )
    assert guest.cart.contact_email == "guest@example.jp"
    await sweeper(cart, datetime.now(UTC) + timedelta(days=31)).sweep_once()
    seen = await cart.carts.GetCart(
        api.GetCartRequest(cart_id=guest.cart.id, cart_token=guest.cart_token),
        metadata=anonymous_web(),
    )
    assert seen.cart.status == pb.CART_STATUS_EXPIRED and not seen.cart.contact_email


async def test_the_sweep_forgets_wrong_code_counts_once_their_window_ended(
    cart: Clients, tokens: Tokens
) -> None:
    guessing = customer(tokens, "cust-guess-sweep")
    mine = (await cart.carts.GetActiveCart(api.GetActiveCartRequest(), metadata=guessing)).cart
    with pytest.raises(grpc.aio.AioRpcError):
        await cart.carts.ApplyPromotionCode(
            api.ApplyPromotionCodeRequest(cart_id=mine.id, code="NOSUCH01"), metadata=guessing
        )

    async def counted() -> int:
        async with cart.host.runtime.db.unit_of_work() as uow:  # type: ignore[union-attr]
            return int(
                (
                    await uow.session.execute(sa.select(sa.func.count()).select_from(code_attempts))
                ).scalar_one()
            )

    assert await counted() == 1
    # Within the window (15 minutes) the count stays; after it, the row goes.
    await sweeper(cart, datetime.now(UTC) + timedelta(minutes=5)).sweep_once()
    assert await counted() == 1
    await sweeper(cart, datetime.now(UTC) + timedelta(minutes=16)).sweep_once()
    assert await counted() == 0
