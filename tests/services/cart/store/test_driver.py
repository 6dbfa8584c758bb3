"""The raw-asyncpg change path's known lines: a read that names the version whose lines this
process holds gets the cart exactly as a full read does, and a cart moved on elsewhere (a
reprice through the SQLAlchemy store, another replica) is read in full again."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import grpc
import pytest

from services.cart.domain.carts import Cart
from services.cart.store.carts import CartStore
from services.cart.store.driver import DriverCartStore, KnownLines, Read
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.devtools.keys import DevKeys
from tenpo.kit.db import Database
from tests.services.cart.conftest import (
    CartStub,
    Clients,
    Upstreams,
    anonymous_web,
    expect_error,
    new_sku,
    start_cart,
)


async def _guest_cart_with_lines(cart: Clients, upstreams: Upstreams, count: int) -> uuid.UUID:
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    for index in range(count):
        sku = new_sku()
        upstreams.catalog.add(sku, 1000 + index)
        await cart.carts.AddLineItem(
            api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=sku),
            metadata=anonymous_web(),
        )
    return uuid.UUID(guest.cart.id)


async def _read(db: Database, cart_id: uuid.UUID, known: KnownLines) -> Cart:
    async with db.driver_connection() as connection:
        read = await DriverCartStore(connection, known).read(cart_id, "scope", None)
    assert read.cart is not None
    return read.cart


async def test_a_read_with_known_lines_equals_a_full_read(
    cart: Clients, upstreams: Upstreams
) -> None:
    db = cart.host.runtime.db  # type: ignore[union-attr]
    cart_id = await _guest_cart_with_lines(cart, upstreams, 3)
    known = KnownLines(100)
    full = await _read(db, cart_id, known)
    assert len(full.lines) == 3
    assert known.get(cart_id) == (full.version, full.lines)
    # The second read names that version: the statement sends no lines, they come from here.
    again = await _read(db, cart_id, known)
    assert again == full
    assert again.lines is full.lines
    assert await _read(db, cart_id, KnownLines(0)) == full


async def test_a_newer_version_remembered_during_the_read_leaves_the_lines_whole(
    cart: Clients, upstreams: Upstreams
) -> None:
    """The statement leaves out the lines of the version known when it was sent; a change
    that remembers a newer version meanwhile must not make the read lose them."""
    db = cart.host.runtime.db  # type: ignore[union-attr]
    cart_id = await _guest_cart_with_lines(cart, upstreams, 2)
    known = KnownLines(100)
    seen = await _read(db, cart_id, known)

    class Racing:
        def __init__(self, connection: object) -> None:
            self.connection = connection

        async def fetch(self, *args: object) -> object:
            rows = await self.connection.fetch(*args)  # type: ignore[attr-defined]
            known.remember(replace(seen, version=seen.version + 1, lines=seen.lines[:1]))
            return rows

    async with db.driver_connection() as connection:
        read = await DriverCartStore(Racing(connection), known).read(cart_id, "scope", None)
    assert read.cart == seen
    assert known.get(cart_id)[0] == seen.version + 1  # the newer one stays


async def test_a_cart_moved_on_elsewhere_is_read_in_full(
    cart: Clients, upstreams: Upstreams
) -> None:
    db = cart.host.runtime.db  # type: ignore[union-attr]
    cart_id = await _guest_cart_with_lines(cart, upstreams, 2)
    known = KnownLines(100)
    seen = await _read(db, cart_id, known)
    # Another writer (here the SQLAlchemy store, as a reprice does) drops a line and bumps
    # the version.
    async with db.unit_of_work() as uow:
        moved = replace(seen, lines=seen.lines[:1], version=seen.version + 1)
        await CartStore(uow.session).save(moved)
        await uow.commit()
    now = await _read(db, cart_id, known)
    assert now.version == seen.version + 1
    assert [line.sku for line in now.lines] == [seen.lines[0].sku]
    assert known.get(cart_id) == (now.version, now.lines)


async def test_replicas_see_the_lines_the_other_one_added(
    database_url: str, nats_url: str, dev_keys: DevKeys, upstreams: Upstreams
) -> None:
    """Two replicas, each keeping the lines it wrote: alternating adds of different SKUs
    each see the other replica's lines."""
    skus = [new_sku() for _ in range(4)]
    for sku in skus:
        upstreams.catalog.add(sku, 500)
    generators = [start_cart(database_url, nats_url, dev_keys, upstreams) for _ in range(2)]
    hosts = [await generator.__anext__() for generator in generators]
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{hosts[0].port}") as one,
            grpc.aio.insecure_channel(f"127.0.0.1:{hosts[1].port}") as two,
        ):
            replicas = [CartStub(one), CartStub(two)]
            guest = await replicas[0].CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
            for index, sku in enumerate(skus):
                response = await replicas[index % 2].AddLineItem(
                    api.AddLineItemRequest(
                        cart_id=guest.cart.id, cart_token=guest.cart_token, sku=sku
                    ),
                    metadata=anonymous_web(),
                )
                assert [li.sku for li in response.cart.line_items] == skus[: index + 1]
                assert response.cart.etag == str(index + 2)
    finally:
        for generator in generators:
            await generator.aclose()


async def test_a_change_to_a_cart_known_here_skips_the_read(
    cart: Clients, upstreams: Upstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = new_sku(), new_sku()
    upstreams.catalog.add(first, 1000)
    upstreams.catalog.add(second, 700)
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    added = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=first),
        metadata=anonymous_web(),
    )
    reads: list[uuid.UUID] = []
    original = DriverCartStore.read

    async def counted(self: DriverCartStore, cart_id: uuid.UUID, *args: Any) -> Read:
        reads.append(cart_id)
        return await original(self, cart_id, *args)

    monkeypatch.setattr(DriverCartStore, "read", counted)
    again = await cart.carts.AddLineItem(
        api.AddLineItemRequest(
            cart_id=guest.cart.id, cart_token=guest.cart_token, sku=second, etag=added.cart.etag
        ),
        metadata=anonymous_web(),
    )
    assert [li.sku for li in again.cart.line_items] == [first, second]
    assert reads == []
    # An etag this replica does not know (here a stale one) is read and checked as always.
    error = await expect_error(
        cart.carts.AddLineItem(
            api.AddLineItemRequest(
                cart_id=guest.cart.id, cart_token=guest.cart_token, sku=first, etag="1"
            ),
            metadata=anonymous_web(),
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    assert error.metadata["current_etag"] == again.cart.etag
    assert len(reads) == 1


async def test_a_reprice_mark_made_after_the_cart_was_known_here_is_honoured(
    cart: Clients, upstreams: Upstreams
) -> None:
    """Price events mark carts without a new version: a change starting from the cart known
    here loses its compare-and-set on the mark, reads again and reprices."""
    first, second = new_sku(), new_sku()
    product = upstreams.catalog.add(first, 1000)
    upstreams.catalog.add(second, 700)
    guest = await cart.carts.CreateCart(api.CreateCartRequest(), metadata=anonymous_web())
    await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=first),
        metadata=anonymous_web(),
    )
    product.price = 1200
    db = cart.host.runtime.db  # type: ignore[union-attr]
    async with db.unit_of_work() as uow:
        assert await CartStore(uow.session).mark_for_reprice([first]) == 1
        await uow.commit()
    after = await cart.carts.AddLineItem(
        api.AddLineItemRequest(cart_id=guest.cart.id, cart_token=guest.cart_token, sku=second),
        metadata=anonymous_web(),
    )
    repriced = after.cart.line_items[0]
    assert (repriced.sku, repriced.unit_price.units, repriced.previous_unit_price.units) == (
        first,
        1200,
        1000,
    )
    assert repriced.price_changed and after.cart.has_price_changes
