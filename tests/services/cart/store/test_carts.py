"""The cart repository: one-statement reads, and a locked re-check that keeps what price
events and sweeps wrote without a new version."""

from __future__ import annotations

from services.cart.store.carts import CartStore
from tenpo.cart.v1 import cart_service_pb2 as api
from tests.services.cart.conftest import ANONYMOUS_WEB, Clients, Upstreams, new_sku


async def test_lock_fresh_keeps_a_reprice_mark_made_after_the_read(
    cart: Clients, upstreams: Upstreams
) -> None:
    sku = new_sku()
    upstreams.catalog.add(sku, 1200)
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=ANONYMOUS_WEB)
    for _ in range(2):
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=sku),
            metadata=ANONYMOUS_WEB,
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
