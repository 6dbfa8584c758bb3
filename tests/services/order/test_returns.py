"""Returns in any store against the real inventory: restocked at the receiving store,
refunded once to the original payment, within the window, never more than was handed over."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import sqlalchemy as sa

from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import OTHER_STORE, device, place
from tests.services.order.test_store_fulfilment import atp_at

pytestmark = pytest.mark.integration


async def shipped_order(stack: Stack, units: int = 2, price: int = 1000) -> tuple[pb.Order, str]:
    sku = await stack.stock(units, price=price)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_DELIVERY, (sku, units))
    await stack.orders.ShipFulfillment(
        api.ShipFulfillmentRequest(
            order_id=order.id,
            fulfillment_id=order.fulfillments[0].id,
            carrier="yamato",
            tracking_number="1",
        ),
        metadata=stack.staff,
    )
    return order, sku


async def refunds(stack: Stack, return_id: str) -> list[int]:
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT amount FROM sandbox_payments WHERE key = :k"),
            {"k": f"{return_id}:refund"},
        )
        return [row.amount for row in rows]


async def test_a_return_at_another_store_restocks_there_and_refunds_once(stack: Stack) -> None:
    order, sku = await shipped_order(stack, units=2, price=1000)
    before = await atp_at(stack, sku, OTHER_STORE)
    request = api.ReturnOrderLinesRequest(
        order_id=order.id,
        store_id=OTHER_STORE,
        lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
        request_id=uuid.uuid4().hex,
    )

    returned = (
        await stack.orders.ReturnOrderLines(request, metadata=device(stack, OTHER_STORE))
    ).order_return
    again = (
        await stack.orders.ReturnOrderLines(request, metadata=device(stack, OTHER_STORE))
    ).order_return

    assert returned.status == pb.RETURN_STATUS_COMPLETED
    assert returned.refund.units == 1000  # the unit's share of what was paid
    assert again == returned
    assert await atp_at(stack, sku, OTHER_STORE) == before + 1
    assert await refunds(stack, returned.id) == [1000]
    received = [
        ev.ReturnReceived.FromString(p) for p in await stack.outbox_events("ReturnReceived")
    ]
    assert [(e.store_id, e.lines[0].quantity) for e in received if e.order_id == order.id] == [
        (OTHER_STORE, 1)
    ]
    issued = [ev.RefundIssued.FromString(p) for p in await stack.outbox_events("RefundIssued")]
    assert [e.amount.units for e in issued if e.order_id == order.id] == [1000]
    # The same request_id with other units is refused.
    reused = api.ReturnOrderLinesRequest()
    reused.CopyFrom(request)
    reused.lines[0].quantity = 2
    await expect_error(
        stack.orders.ReturnOrderLines(reused, metadata=device(stack, OTHER_STORE)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )


async def test_concurrent_returns_never_take_back_more_than_was_handed_over(stack: Stack) -> None:
    order, sku = await shipped_order(stack, units=2)

    async def give_back() -> str:
        try:
            await stack.return_at_store(order.id, OTHER_STORE, sku)
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason
        return "OK"

    outcomes = await asyncio.gather(*(give_back() for _ in range(6)))

    # A return whose restock timed out (a busy machine) was recorded all the same: it holds
    # its unit, PENDING, like one that finished.
    taken = [o for o in outcomes if o in ("OK", "INVENTORY_UNAVAILABLE", "PAYMENT_UNAVAILABLE")]
    assert len(taken) == 2, outcomes
    assert sorted(set(outcomes) - set(taken)) == ["NOT_RETURNABLE"]


async def test_returns_are_refused_out_of_window_before_leaving_or_at_another_device(
    stack: Stack,
) -> None:
    order, sku = await shipped_order(stack, units=1)
    line = [pb.FulfillmentLine(sku=sku, quantity=1)]
    await expect_error(
        stack.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(
                order_id=order.id, store_id=OTHER_STORE, lines=line, request_id="r1"
            ),
            metadata=device(stack),  # a device of another store than the one named
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "STORE_MISMATCH",
    )
    await expect_error(
        stack.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(order_id=order.id, store_id=OTHER_STORE, lines=line),
            metadata=stack.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RETURN_INVALID",
    )
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text("UPDATE orders SET created_at = now() - interval '40 days' WHERE id = :id"),
            {"id": order.id},
        )
        await uow.commit()
    await expect_error(
        stack.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(
                order_id=order.id, store_id=OTHER_STORE, lines=line, request_id="r2"
            ),
            metadata=stack.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_WINDOW_EXPIRED",
    )
    # Not handed over yet: nothing to return.
    fresh = await stack.stock(1)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    pending = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (fresh, 1))
    await expect_error(
        stack.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(
                order_id=pending.id,
                store_id=OTHER_STORE,
                lines=[pb.FulfillmentLine(sku=fresh, quantity=1)],
                request_id="r3",
            ),
            metadata=stack.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_RETURNABLE",
    )


async def bad_field(call: object, reason: str) -> str:
    """The one field an INVALID_ARGUMENT names."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    details = decode_error(caught.value)
    assert details.reason == reason
    assert len(details.field_violations) == 1
    return details.field_violations[0].field


async def test_past_the_window_a_bad_store_sku_or_quantity_is_named_before_the_window(
    stack: Stack,
) -> None:
    order, sku = await shipped_order(stack, units=2)
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text("UPDATE orders SET created_at = now() - interval '40 days' WHERE id = :id"),
            {"id": order.id},
        )
        await uow.commit()

    def ask(store: str, *lines: tuple[str, int]) -> object:
        return stack.orders.ReturnOrderLines(
            api.ReturnOrderLinesRequest(
                order_id=order.id,
                store_id=store,
                lines=[pb.FulfillmentLine(sku=s, quantity=q) for s, q in lines],
                request_id=uuid.uuid4().hex,
            ),
            metadata=stack.staff,
        )

    assert await bad_field(ask("no-such-store", (sku, 1)), "LOCATION_UNKNOWN") == "store_id"
    other = f"O-{uuid.uuid4().hex[:10]}"  # a SKU this order does not have
    assert (
        await bad_field(ask(OTHER_STORE, (sku, 1), (other, 1)), "RETURN_LINES_INVALID")
        == "lines[1].sku"
    )
    assert (
        await bad_field(ask(OTHER_STORE, (sku, 2), (sku, 1)), "RETURN_LINES_INVALID")
        == "lines[1].quantity"
    )
    # A return by mail names a bad line before the window too.
    assert (
        await bad_field(
            stack.orders.RequestReturn(
                api.RequestReturnRequest(
                    order_id=order.id,
                    lines=[pb.FulfillmentLine(sku=other, quantity=1)],
                    request_id=uuid.uuid4().hex,
                ),
                metadata=stack.staff,
            ),
            "RETURN_LINES_INVALID",
        )
        == "lines[0].sku"
    )
    # Every field right: the window is what refuses it, and nothing was recorded.
    await expect_error(
        ask(OTHER_STORE, (sku, 2)), grpc.StatusCode.FAILED_PRECONDITION, "RETURN_WINDOW_EXPIRED"
    )
    async with stack.order_db.unit_of_work() as uow:
        recorded = await uow.session.scalar(
            sa.text("SELECT count(*) FROM order_returns WHERE order_id = :id"), {"id": order.id}
        )
    assert recorded == 0
