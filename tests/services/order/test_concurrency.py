"""Many shoppers competing for a SKU with little stock: exactly as many orders as units,
nothing oversold, every loser compensated (nothing left reserved, no order left pending)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack

pytestmark = pytest.mark.integration

SHOPPERS = 40
UNITS = 10


async def test_checkouts_competing_for_scarce_stock_never_oversell(stack: Stack) -> None:
    sku = await stack.stock(UNITS)
    customers = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(SHOPPERS)]
    carts = await asyncio.gather(*(stack.cart(c, (sku, 1)) for c in customers))

    async def checkout(customer: str, cart: object) -> str:
        try:
            placed = await stack.orders.PlaceOrder(
                stack.place_request(cart),  # type: ignore[arg-type]
                metadata=stack.customer(customer),
            )
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason or error.code().name
        return pb.OrderStatus.Name(placed.order.status)

    outcomes = await asyncio.gather(
        *(checkout(c, k) for c, k in zip(customers, carts, strict=True))
    )

    assert outcomes.count("ORDER_STATUS_PLACED") == UNITS
    assert set(outcomes) == {"ORDER_STATUS_PLACED", "INSUFFICIENT_STOCK"}
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved, level.available_to_promise) == (0, 0, 0)
    for customer in customers:
        listed = await stack.orders.ListOrders(
            api.ListOrdersRequest(statuses=[pb.ORDER_STATUS_PENDING, pb.ORDER_STATUS_CONFIRMED]),
            metadata=stack.customer(customer),
        )
        assert list(listed.orders) == []
