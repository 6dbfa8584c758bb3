"""Crash safety: a saga interrupted at any step (before the step, or after it but before
that was written down) is finished by the sweeper of a restarted process — or compensated
when it can no longer succeed — with nothing doubled, lost or left held."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from services.order.domain.orders import PaymentMethod
from services.order.domain.saga import SagaStep
from services.order.usecases.checkout import Checkout
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.common.v1 import common_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import OK_CARD, Stack

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at that point."""


async def _crash_then_sweep(
    stack: Stack, customer: str, cart: cart_pb.Cart, step: SagaStep, when: str, between=None
) -> api.PlaceOrderRequest:
    checkout = stack.checkout
    request = stack.place_request(cart)

    async def crash(order_id: uuid.UUID, at: SagaStep) -> None:
        if at is step:
            raise Crash

    setattr(checkout, f"{when}_step", crash)
    try:
        with pytest.raises(Crash):
            await checkout.place(
                Principal(PrincipalKind.CUSTOMER, customer, channel=common_pb2.CHANNEL_APP),
                cart_id=cart.id,
                cart_etag=cart.etag,
                method=PaymentMethod.CARD,
                card_token=OK_CARD,
                request_id=request.request_id,
                request=request,
            )
    finally:
        setattr(checkout, f"{when}_step", None)
    if between is not None:
        await between()
    # The dead runner's lease runs out ...
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE orders SET lease_until = now() - interval '1 second' WHERE cart_id = :c"
            ),
            {"c": cart.id},
        )
        await uow.commit()
    # ... and a restarted process's sweeper takes the saga over.
    checkout.instance = f"restarted-{uuid.uuid4().hex[:6]}"
    assert await checkout.sweep_once() >= 1
    return request


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", list(SagaStep), ids=lambda s: s.name)
async def test_a_saga_killed_at_any_step_is_finished_once_by_the_sweeper(
    stack: Stack, step: SagaStep, when: str
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(customer, (sku, 2))

    request = await _crash_then_sweep(stack, customer, cart, step, when)

    md = stack.customer(customer)
    listed = await stack.orders.ListOrders(api.ListOrdersRequest(), metadata=md)
    assert [o.status for o in listed.orders] == [pb.ORDER_STATUS_PLACED]
    order = listed.orders[0]
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (1, 0)  # committed exactly once
    events = [ev.OrderPlaced.FromString(p) for p in await stack.outbox_events("OrderPlaced")]
    assert len([e for e in events if e.order_id == order.id]) == 1
    closed = (await stack.carts.GetCart(cart_api.GetCartRequest(cart_id=cart.id), metadata=md)).cart
    assert (closed.status, closed.order_id) == (cart_pb.CART_STATUS_CHECKED_OUT, order.id)
    # The customer's retry of the request learns the outcome.
    retried = await stack.orders.PlaceOrder(request, metadata=md)
    assert retried.order.id == order.id


@pytest.mark.parametrize(
    ("step", "when"),
    [
        (SagaStep.RESERVE_LOYALTY, "after"),
        (SagaStep.AUTHORIZE_PAYMENT, "after"),
        # After the cart closed the order is confirmed: only "before" can still fail.
        (SagaStep.CHECKOUT_CART, "before"),
    ],
)
async def test_a_saga_that_cannot_finish_after_a_crash_is_compensated(
    stack: Stack, step: SagaStep, when: str
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    md = stack.customer(customer)
    cart = await stack.cart(customer, (sku, 2))

    async def customer_changes_the_cart() -> None:
        await stack.carts.AddLineItem(
            cart_api.AddLineItemRequest(cart_id=cart.id, sku=sku, quantity=1), metadata=md
        )

    await _crash_then_sweep(stack, customer, cart, step, when, customer_changes_the_cart)

    listed = await stack.orders.ListOrders(
        api.ListOrdersRequest(statuses=[pb.ORDER_STATUS_FAILED]), metadata=md
    )
    assert [o.failure_reason for o in listed.orders] == ["ETAG_MISMATCH"]
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (3, 0)
    # Resumed, the saga authorized the payment before the cart refused: voided.
    assert await stack.sandbox_state(listed.orders[0].id) == "voided"
    still = (await stack.carts.GetCart(cart_api.GetCartRequest(cart_id=cart.id), metadata=md)).cart
    assert still.status == cart_pb.CART_STATUS_ACTIVE


async def test_two_replicas_sweeping_at_once_take_each_saga_once(stack: Stack) -> None:
    sku = await stack.stock(6)
    customers = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    checkout = stack.checkout

    async def crash(order_id: uuid.UUID, at: SagaStep) -> None:
        if at is SagaStep.RESERVE_STOCK:
            raise Crash

    checkout.after_step = crash
    try:
        for customer in customers:
            cart = await stack.cart(customer, (sku, 1))
            request = stack.place_request(cart)
            with pytest.raises(Crash):
                await checkout.place(
                    Principal(PrincipalKind.CUSTOMER, customer, channel=common_pb2.CHANNEL_APP),
                    cart_id=cart.id,
                    cart_etag=cart.etag,
                    method=PaymentMethod.CARD,
                    card_token=OK_CARD,
                    request_id=request.request_id,
                    request=request,
                )
    finally:
        checkout.after_step = None
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE orders SET lease_until = now() - interval '1 second'"
                " WHERE customer_id = ANY(:c)"
            ),
            {"c": customers},
        )
        await uow.commit()
    replica = Checkout(
        checkout.db, checkout.cart, checkout.inventory, checkout.payments, checkout.policy
    )

    claimed = await asyncio.gather(checkout.sweep_once(), replica.sweep_once())

    assert sum(claimed) == len(customers)
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (0, 0)
    for customer in customers:
        listed = await stack.orders.ListOrders(
            api.ListOrdersRequest(), metadata=stack.customer(customer)
        )
        assert [o.status for o in listed.orders] == [pb.ORDER_STATUS_PLACED]
