"""The cart shows availability up to CART_AVAILABILITY_CACHE_SECONDS old (a product
decision, for speed): stock is promised only by the checkout saga's reservation, which reads
inventory's truth. Here the cart keeps inventory's answers for ten minutes, so what it shows is
certainly stale, and the saga still refuses what is gone."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tests.services.order.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cart_overrides() -> dict[str, Any]:
    return {"availability_cache_seconds": 600}


async def test_a_sku_sold_out_since_the_cart_looked_is_refused_by_the_saga_not_the_cart(
    stack: Stack,
) -> None:
    sku = await stack.stock(2)
    mine, other = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(mine, (sku, 1))
    line = cart.line_items[0]
    assert (line.availability, line.available_quantity) == (cart_pb.AVAILABILITY_AVAILABLE, 2)
    # Someone else takes both units.
    await stack.orders.PlaceOrder(
        stack.place_request(await stack.cart(other, (sku, 2))), metadata=stack.customer(other)
    )
    assert await stack.atp(sku) == 0

    # The cart answers from what inventory said before: it takes the change and says
    # available — it informs, it does not promise.
    more = (
        await stack.carts.AddLineItem(
            cart_api.AddLineItemRequest(cart_id=cart.id, sku=sku, quantity=1),
            metadata=stack.customer(mine),
        )
    ).cart
    line = more.line_items[0]
    assert line.quantity == 2
    assert (line.availability, line.available_quantity) == (cart_pb.AVAILABILITY_AVAILABLE, 2)

    # The saga reserves against the truth and refuses; nothing is taken.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.orders.PlaceOrder(stack.place_request(more), metadata=stack.customer(mine))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert decode_error(caught.value).reason == "INSUFFICIENT_STOCK"
    assert await stack.atp(sku) == 0
