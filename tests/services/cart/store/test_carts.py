"""The cart repository: one-statement reads, and a locked re-check that keeps what price
events and sweeps wrote without a new version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from services.cart.domain.carts import Cart, CartStatus
from services.cart.store.carts import CartStore
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.common.v1 import common_pb2
from tests.services.cart.conftest import Clients, Upstreams, anonymous_web, new_sku


async def test_lock_fresh_keeps_a_reprice_mark_made_after_the_read(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1200)
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    for _ in range(2):
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=sku),
            metadata=anonymous_web(),
        )
    db = cart.host.runtime.db  # type: ignore[union-attr]
    async with db.unit_of_work() as uow:
        seen = await CartStore(uow.session).get(guest.cart.id)
    assert seen is not None and seen.priced_at is not None
    assert [(li.sku, li.quantity) for li in seen.lines] == [(sku, 2)]
    async with db.unit_of_work() as uow:
        assert await CartStore(uow.session).mark_for_reprice([sku]) == 1
        await uow.commit()
    async with db.unit_of_work() as uow:
        fresh = await CartStore(uow.session).lock_fresh(seen)
    assert fresh is not None and fresh.priced_at is None and fresh.lines == seen.lines


async def test_insert_active_if_absent_works_under_a_generic_plan(cart: Clients) -> None:
    # asyncpg prepares statements; from the sixth execution on a connection PostgreSQL may
    # plan them generically, where a bound `status = $1` no longer proves the partial unique
    # index of active carts (the concurrency test met "no unique or exclusion constraint
    # matching the ON CONFLICT specification"). Forcing the generic plan replays it at once.
    db = cart.host.runtime.db  # type: ignore[union-attr]
    customer = f"generic-plan-{uuid.uuid4()}"
    now = datetime.now(UTC)

    def fresh() -> Cart:
        return Cart(
            id=uuid.uuid4(),
            customer_id=customer,
            status=CartStatus.ACTIVE,
            channel=common_pb2.CHANNEL_APP,
            store_id=None,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
            priced_channel=common_pb2.CHANNEL_APP,
        )

    inserted = []
    for _ in range(2):
        async with db.unit_of_work() as uow:
            await uow.session.execute(sa.text("SET LOCAL plan_cache_mode = force_generic_plan"))
            inserted.append(await CartStore(uow.session).insert_active_if_absent(fresh()))
            await uow.commit()
    assert inserted == [True, False]  # the second first use finds the first one's cart
