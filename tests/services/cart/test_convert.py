"""Carts to protos: a renderer that reuses line messages renders exactly what a fresh
rendering does, and builds a line again whenever it is another object or discount."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from services.cart.convert import CartRenderer, cart_to
from services.cart.domain.carts import Availability, Cart, CartStatus, LineItem, Totals
from services.cart.usecases.carts import CartView
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.common.v1 import common_pb2

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


CART_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _line(sku: str, price: int) -> LineItem:
    return LineItem(
        id=uuid.uuid4(),
        sku=sku,
        quantity=2,
        product_id="p-1",
        title="スニーカー",
        image_url="https://img.example/1.jpg",
        unit_price=price,
        regular_price=price + 100,
        tax_rate=10,
        category_ids=frozenset({"shoes"}),
        channel=common_pb2.CHANNEL_WEB,
        store_id=None,
        created_at=NOW,
        availability=Availability.AVAILABLE,
        available_quantity=5,
    )


def _view(
    lines: tuple[LineItem, ...],
    discounts: dict[uuid.UUID, int],
    cart_id: uuid.UUID = CART_ID,
    version: int = 1,
) -> CartView:
    cart = Cart(
        id=cart_id,
        version=version,
        customer_id=None,
        status=CartStatus.ACTIVE,
        channel=common_pb2.CHANNEL_WEB,
        store_id=None,
        created_at=NOW,
        updated_at=NOW,
        last_activity_at=NOW,
        lines=lines,
    )
    subtotal = sum(line.subtotal for line in lines)
    totals = Totals(
        subtotal=subtotal,
        discount=sum(discounts.values()),
        shipping=0,
        total=subtotal - sum(discounts.values()),
        taxes=[],
        loyalty_points=0,
        amount_due=subtotal - sum(discounts.values()),
        line_discounts=discounts,
        applied=[],
        rejected=[],
    )
    return CartView(cart, totals)


def test_reused_lines_render_as_a_fresh_rendering_does() -> None:
    renderer = CartRenderer(100)
    shoes, socks = _line("SHOES", 9800), _line("SOCKS", 500)
    first = _view((shoes, socks), {})
    assert renderer.cart(first) == cart_to(first)
    # The same objects: reused, and still right.
    assert renderer.cart(first) == cart_to(first)
    # A discount moves onto a line: that line is built again.
    discounted = _view((shoes, socks), {shoes.id: 980})
    rendered = renderer.cart(discounted)
    assert rendered == cart_to(discounted)
    assert rendered.line_items[0].discount.units == 980
    # An equal line under the same id but another object (a quantity changed, or a line
    # read again from the database) is built again.
    changed = _view((shoes, replace(socks, quantity=3)), {shoes.id: 980})
    after = renderer.cart(changed)
    assert after.line_items[1].quantity == 3 and after.line_items[1].subtotal.units == 1500
    assert after == cart_to(changed)


def test_lines_added_removed_and_moved_render_as_a_fresh_rendering_does() -> None:
    renderer = CartRenderer(100)
    a, b, c, d = (_line(sku, 100 * (i + 1)) for i, sku in enumerate("ABCD"))
    steps = [
        (a,),
        (a, b),  # added at the end
        (a, b, c),
        (a, c),  # removed from the middle: c moves up a position
        (a, c, d),
        (d,),  # the first lines gone
        (),  # emptied
        (b, a),
    ]
    for version, lines in enumerate(steps, start=1):
        view = _view(lines, {}, version=version)
        rendered = renderer.cart(view)
        assert rendered == cart_to(view)
        assert [item.sku for item in rendered.line_items] == [line.sku for line in lines]


def test_carts_never_share_rendered_lines() -> None:
    renderer = CartRenderer(100)
    shoes = _line("SHOES", 9800)
    mine = _view((shoes,), {})
    other = _view((_line("HAT", 3000),), {}, cart_id=uuid.uuid4())
    assert renderer.cart(mine) == cart_to(mine)
    assert renderer.cart(other) == cart_to(other)
    assert renderer.cart(mine).line_items[0].sku == "SHOES"


def test_a_response_is_filled_in_place_with_the_whole_cart() -> None:
    renderer = CartRenderer(100)
    lines = (_line("SHOES", 9800), _line("SOCKS", 500))
    view = _view(lines, {})
    renderer.cart(view)
    response = api.AddLineItemResponse()
    renderer.render(response.cart, view)
    assert response.cart == cart_to(view)
    assert len(response.cart.line_items) == 2 and response.cart.etag == "1"
    assert response.cart.totals.total.units == sum(line.subtotal for line in lines)


def test_a_renderer_without_room_builds_every_line() -> None:
    view = _view((_line("SHOES", 9800),), {})
    assert CartRenderer(0).cart(view) == cart_to(view)
