"""Fulfilments through gRPC against the real cart and inventory: a placed order split by its
plan, click & collect (ready, code, pickup, expiry), delivery (ship, deliver, complete),
captures when goods leave, carry-out, store devices kept to their own store."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.order.upstream import InventoryClient
from services.order.usecases.fulfilments import Fulfilments
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.common.v1 import common_pb2
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit.service_token import StaticToken
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.inventory.conftest import start_inventory
from tests.services.order.conftest import OK_CARD, SERVICE_SCOPES, STORE, Metadata, Stack
from tests.services.order.test_checkout import expect_error

pytestmark = pytest.mark.integration

OTHER_STORE = "tokyo-shinjuku"


def device(
    stack: Stack, store: str = STORE, scopes: tuple[str, ...] = ("orders:write",)
) -> Metadata:
    return stack.tokens.metadata(
        stack.tokens.mint(
            subject=f"{store}-pos-1", kind="device", channel="POS", store_id=store, scopes=scopes
        )
    )


def fulfilments_of(stack: Stack) -> Fulfilments:
    assert stack.order_host.runtime is not None
    found: Fulfilments = stack.order_host.runtime.parts["fulfilments"]
    return found


async def place(
    stack: Stack,
    customer: str,
    method: int,
    *lines: tuple[str, int],
    payment: int = pb.PAYMENT_METHOD_CARD,
) -> pb.Order:
    """Place an order of ``lines`` with the fulfilment ``method`` (a cart method)."""
    md = stack.customer(customer)
    cart = await stack.cart(customer, *lines)
    choice = cart_pb.Fulfillment(method=method)  # type: ignore[arg-type]
    if method in (cart_pb.FULFILLMENT_METHOD_PICKUP, cart_pb.FULFILLMENT_METHOD_CARRY_OUT):
        choice.store_id = STORE
    else:
        choice.address.CopyFrom(
            common_pb2.PostalAddress(
                region_code="JP",
                postal_code="150-0002",
                administrative_area="東京都",
                locality="渋谷区",
                address_lines=["渋谷2-21-1"],
                recipient="山田 花子",
            )
        )
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(id=cart.id, etag=cart.etag, fulfillment=choice)
    )
    update.update_mask.paths.append("fulfillment")
    cart = (await stack.carts.UpdateCart(update, metadata=md)).cart
    request = api.PlaceOrderRequest(
        cart_id=cart.id,
        cart_etag=cart.etag,
        payment=pb.Payment(
            method=payment,  # type: ignore[arg-type]
            card_token=OK_CARD if payment == pb.PAYMENT_METHOD_CARD else "",
        ),
        request_id=uuid.uuid4().hex,
    )
    return (await stack.orders.PlaceOrder(request, metadata=md)).order


async def captures(stack: Stack, fulfilment_id: str) -> list[int]:
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT amount FROM sandbox_payments WHERE key = :k"),
            {"k": f"{fulfilment_id}:capture"},
        )
        return [row.amount for row in rows]


async def events_of(stack: Stack, kind: type, order_id: str) -> list:  # type: ignore[type-arg]
    found = [kind.FromString(p) for p in await stack.outbox_events(kind.__name__)]
    return [
        e
        for e in found
        if (e.fulfillment.order_id if hasattr(e, "fulfillment") else e.order_id) == order_id
    ]


async def test_a_pickup_order_gets_one_fulfilment_at_its_store_shown_in_the_order(
    stack: Stack,
) -> None:
    sku = await stack.stock(5, price=1500)
    customer = f"c-{uuid.uuid4().hex[:8]}"

    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 2))

    assert order.status == pb.ORDER_STATUS_PLACED
    [fulfilment] = order.fulfillments
    assert fulfilment.type == pb.FULFILLMENT_TYPE_CLICK_AND_COLLECT
    assert fulfilment.status == pb.FULFILLMENT_STATUS_PREPARING
    assert (fulfilment.location_id, fulfilment.store_id) == (STORE, STORE)
    assert [(li.sku, li.quantity) for li in fulfilment.lines] == [(sku, 2)]
    assert fulfilment.amount.units == order.totals.total.units
    assert fulfilment.capture_state == pb.CAPTURE_STATE_NOT_DUE
    assert fulfilment.number == f"{order.order_number}-1"
    got = await stack.orders.GetOrder(
        api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
    )
    assert got.order == order


async def test_click_and_collect_ready_then_picked_up_with_the_code_captures(
    stack: Stack,
) -> None:
    sku = await stack.stock(5, price=2000)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    pos = device(stack)

    ready = (
        await stack.orders.MarkReadyForPickup(
            api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=pos
        )
    ).order
    shown_to_store = ready.fulfillments[0]
    assert shown_to_store.status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP
    assert shown_to_store.pickup.pickup_code == ""  # the store never sees the code
    assert shown_to_store.pickup.HasField("hold_until")
    mine = (
        await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
        )
    ).order.fulfillments[0]
    code = mine.pickup.pickup_code
    assert len(code) == 8
    assert code in mine.pickup.qr_payload
    # Marking ready again (a retry) keeps the code.
    again = await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=pos
    )
    assert again.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP
    [announced] = await events_of(stack, ev.ReadyForPickup, order.id)
    assert announced.fulfillment.store_id == STORE
    assert announced.fulfillment.customer_id == customer
    assert code not in announced.SerializeToString().decode("latin-1")

    wrong = "BBBBBBBB" if code != "BBBBBBBB" else "CCCCCCCC"
    await expect_error(
        stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=wrong),
            metadata=pos,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PICKUP_CODE_MISMATCH",
    )
    assert await captures(stack, fid) == []

    picked = (
        await stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(
                order_id=order.id, fulfillment_id=fid, pickup_code=code.lower()
            ),
            metadata=pos,
        )
    ).order

    assert picked.fulfillments[0].status == pb.FULFILLMENT_STATUS_PICKED_UP
    assert picked.fulfillments[0].capture_state == pb.CAPTURE_STATE_CAPTURED
    assert picked.status == pb.ORDER_STATUS_COMPLETED
    assert picked.payment_state == pb.PAYMENT_STATE_CAPTURED
    assert await captures(stack, fid) == [order.totals.total.units]
    assert len(await events_of(stack, ev.PickedUp, order.id)) == 1
    [paid] = await events_of(stack, ev.PaymentCaptured, order.id)
    assert paid.amount.units == order.totals.total.units
    assert len(await events_of(stack, ev.OrderCompleted, order.id)) == 1


async def test_wrong_codes_are_rate_limited_even_when_guessed_concurrently(stack: Stack) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    pos = device(stack)
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=pos
    )
    code = (
        (
            await stack.orders.GetOrder(
                api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
            )
        )
        .order.fulfillments[0]
        .pickup.pickup_code
    )
    wrong = "BBBBBBBB" if code != "BBBBBBBB" else "CCCCCCCC"

    async def guess() -> str:
        try:
            await stack.orders.ConfirmPickup(
                api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=wrong),
                metadata=pos,
            )
        except grpc.aio.AioRpcError as error:
            from tenpo.kit.grpc_errors import decode_error

            return decode_error(error).reason
        return "OK"

    reasons = await asyncio.gather(*(guess() for _ in range(12)))

    # Five wrong codes lock the fulfilment: the other guesses were not even compared.
    assert reasons.count("PICKUP_CODE_MISMATCH") == 5, reasons
    assert reasons.count("PICKUP_CODE_LOCKED") == 7, reasons
    # Even the right code waits for the lock to end.
    await expect_error(
        stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=code),
            metadata=pos,
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PICKUP_CODE_LOCKED",
    )


async def test_a_device_of_another_store_and_customers_cannot_work_on_a_fulfilment(
    stack: Stack,
) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    request = api.MarkReadyForPickupRequest(
        order_id=order.id, fulfillment_id=order.fulfillments[0].id
    )

    await expect_error(
        stack.orders.MarkReadyForPickup(request, metadata=device(stack, OTHER_STORE)),
        grpc.StatusCode.NOT_FOUND,
        "FULFILLMENT_NOT_FOUND",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.orders.MarkReadyForPickup(request, metadata=stack.customer(customer))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # Someone else's order: invisible, in the order and its stream alike.
    await expect_error(
        stack.orders.GetOrder(
            api.GetOrderRequest(order_id=order.id), metadata=stack.customer("someone-else")
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    stream = stack.orders.WatchOrder(
        api.WatchOrderRequest(order_id=order.id), metadata=stack.customer("someone-else")
    )
    await expect_error(stream.read(), grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")
    unchanged = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert unchanged.fulfillments[0].status == pb.FULFILLMENT_STATUS_PREPARING


async def test_a_delivery_ships_captures_and_completes_when_delivered(stack: Stack) -> None:
    sku = await stack.stock(4, price=3000)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_DELIVERY, (sku, 2))
    [fulfilment] = order.fulfillments
    assert fulfilment.type == pb.FULFILLMENT_TYPE_DELIVERY
    assert fulfilment.store_id == STORE  # shipped from the store
    fid = fulfilment.id

    await expect_error(
        stack.orders.ShipFulfillment(
            api.ShipFulfillmentRequest(
                order_id=order.id, fulfillment_id=fid, carrier="Yamato!", tracking_number=""
            ),
            metadata=stack.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SHIPMENT_INVALID",
    )
    shipped = (
        await stack.orders.ShipFulfillment(
            api.ShipFulfillmentRequest(
                order_id=order.id,
                fulfillment_id=fid,
                carrier="yamato",
                tracking_number="1234-5678-9012",
                request_id=uuid.uuid4().hex,
            ),
            metadata=device(stack),
        )
    ).order
    assert shipped.fulfillments[0].status == pb.FULFILLMENT_STATUS_SHIPPED
    assert shipped.fulfillments[0].shipment.tracking_number == "1234-5678-9012"
    assert shipped.payment_state == pb.PAYMENT_STATE_CAPTURED
    assert shipped.status == pb.ORDER_STATUS_PLACED
    assert await captures(stack, fid) == [order.totals.total.units]
    [event] = await events_of(stack, ev.FulfillmentShipped, order.id)
    assert (event.carrier, event.tracking_number) == ("yamato", "1234-5678-9012")
    # Shipped is final: it cannot be cancelled any more.
    await expect_error(
        stack.orders.CancelOrder(
            api.CancelOrderRequest(order_id=order.id), metadata=stack.customer(customer)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ORDER_NOT_CANCELLABLE",
    )

    await expect_error(
        stack.orders.UpdateDeliveryStatus(
            api.UpdateDeliveryStatusRequest(
                order_id=order.id, fulfillment_id=fid, status=pb.FULFILLMENT_STATUS_PICKED_UP
            ),
            metadata=stack.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "DELIVERY_STATUS_INVALID",
    )
    for status in (pb.FULFILLMENT_STATUS_OUT_FOR_DELIVERY, pb.FULFILLMENT_STATUS_DELIVERED):
        done = (
            await stack.orders.UpdateDeliveryStatus(
                api.UpdateDeliveryStatusRequest(
                    order_id=order.id, fulfillment_id=fid, status=status
                ),
                metadata=stack.staff,
            )
        ).order
    assert done.fulfillments[0].status == pb.FULFILLMENT_STATUS_DELIVERED
    assert done.status == pb.ORDER_STATUS_COMPLETED
    assert len(await events_of(stack, ev.FulfillmentDelivered, order.id)) == 1
    assert len(await events_of(stack, ev.OrderCompleted, order.id)) == 1
    # A late "out for delivery" from the carrier changes nothing.
    late = await stack.orders.UpdateDeliveryStatus(
        api.UpdateDeliveryStatusRequest(
            order_id=order.id, fulfillment_id=fid, status=pb.FULFILLMENT_STATUS_OUT_FOR_DELIVERY
        ),
        metadata=stack.staff,
    )
    assert late.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_DELIVERED
    assert await captures(stack, fid) == [order.totals.total.units]


async def test_same_day_has_a_promised_window(stack: Stack) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_SAME_DAY, (sku, 1))
    [fulfilment] = order.fulfillments
    assert fulfilment.type == pb.FULFILLMENT_TYPE_SAME_DAY
    window = fulfilment.promised_window
    assert window.start_time.ToDatetime() < window.end_time.ToDatetime()
    assert fulfilment.due_time == window.start_time


async def test_carry_out_is_handed_over_at_once_and_captured_by_the_sweeper(
    stack: Stack,
) -> None:
    sku = await stack.stock(2, price=990)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(
        stack,
        customer,
        cart_pb.FULFILLMENT_METHOD_CARRY_OUT,
        (sku, 1),
        payment=pb.PAYMENT_METHOD_PAY_AT_STORE,
    )
    [fulfilment] = order.fulfillments
    assert fulfilment.status == pb.FULFILLMENT_STATUS_HANDED_OVER
    assert order.status == pb.ORDER_STATUS_COMPLETED
    assert fulfilment.capture_state == pb.CAPTURE_STATE_DUE

    while await fulfilments_of(stack).sweep_once():
        pass

    got = (
        await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
        )
    ).order
    assert got.fulfillments[0].capture_state == pb.CAPTURE_STATE_CAPTURED
    assert got.payment_state == pb.PAYMENT_STATE_CAPTURED
    assert len(await events_of(stack, ev.PaymentCaptured, order.id)) == 1


async def test_an_expired_pickup_is_cancelled_restocked_and_voided(stack: Stack) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 2))
    fid = order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=device(stack)
    )
    assert await stack.atp(sku) == 1
    async with stack.order_db.unit_of_work() as uow:  # the hold runs out
        await uow.session.execute(
            sa.text(
                "UPDATE fulfillments SET hold_until = now() - interval '1 minute', "
                "action_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": fid},
        )
        await uow.commit()

    # Two sweepers at once (two replicas): the pickup expires once.
    sweeper = fulfilments_of(stack)
    await asyncio.gather(sweeper.sweep_once(), sweeper.sweep_once())

    got = (
        await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
        )
    ).order
    assert got.fulfillments[0].status == pb.FULFILLMENT_STATUS_CANCELLED
    assert got.fulfillments[0].cancel_reason == "PICKUP_EXPIRED"
    assert got.fulfillments[0].capture_state == pb.CAPTURE_STATE_RELEASED
    assert got.status == pb.ORDER_STATUS_CANCELLED
    assert await stack.atp(sku) == 3
    assert await stack.sandbox_state(order.id) == "voided"
    assert len(await events_of(stack, ev.PickupExpired, order.id)) == 1
    # A code after the expiry is refused.
    await expect_error(
        stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code="BCDFGHJK"),
            metadata=device(stack),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "FULFILLMENT_STATE_CONFLICT",
    )


async def test_watch_order_sends_the_order_then_each_change(stack: Stack) -> None:
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    stream = stack.orders.WatchOrder(
        api.WatchOrderRequest(order_id=order.id), metadata=stack.customer(customer)
    )
    first = await stream.read()
    assert first.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_PREPARING

    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=device(stack)
    )
    second = await stream.read()
    assert second.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP
    code = second.order.fulfillments[0].pickup.pickup_code  # the owner's stream has it
    await stack.orders.ConfirmPickup(
        api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=code),
        metadata=device(stack),
    )
    third = await stream.read()
    assert third.order.status == pb.ORDER_STATUS_COMPLETED
    # Completed and paid: the stream ends.
    assert await stream.read() == grpc.aio.EOF


async def test_pickup_expiry_waits_while_inventory_is_down(
    stack: Stack, postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> None:
    """The sweeper's inventory is a real server that stops: nothing changes, and after the
    claim's lease the next sweep (inventory answering again) finishes the expiry."""
    sku = await stack.stock(2)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid), metadata=device(stack)
    )
    await expire_hold(stack, fid)
    sweeper = fulfilments_of(stack)
    async with inventory_stopped(stack, postgres_admin_url, nats_url, dev_keys):
        assert await sweeper.sweep_once() >= 1
    got = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert got.fulfillments[0].status == pb.FULFILLMENT_STATUS_READY_FOR_PICKUP
    assert got.status == pb.ORDER_STATUS_PLACED
    assert await stack.sandbox_state(order.id) == "approved"  # not voided either

    await expire_hold(stack, fid)  # as if the claim's lease ran out
    await sweeper.sweep_once()

    got = (
        await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=stack.staff)
    ).order
    assert got.fulfillments[0].status == pb.FULFILLMENT_STATUS_CANCELLED
    assert await stack.sandbox_state(order.id) == "voided"


async def expire_hold(stack: Stack, fulfilment_id: str) -> None:
    """The hold ran out (and the sweeper may look now)."""
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE fulfillments SET hold_until = now() - interval '1 minute', "
                "action_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": fulfilment_id},
        )
        await uow.commit()


@contextlib.asynccontextmanager
async def inventory_stopped(
    stack: Stack,
    postgres_admin_url: str,
    nats_url: str,
    dev_keys: DevKeys,
    part: Any = None,
) -> AsyncIterator[None]:
    """The order service's fulfilment calls (or those of ``part``, a use case with an
    ``inventory``) go to a real inventory server that was started and then stopped (the
    shared one keeps serving the other tests)."""
    fulfilments = part if part is not None else fulfilments_of(stack)
    real = fulfilments.inventory
    name = f"test_inv_down_{uuid.uuid4().hex[:10]}"
    url = ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))
    hosts = start_inventory(url, nats_url, dev_keys)
    host = await hosts.__anext__()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    token = stack.tokens.mint(subject="order-service", kind="service", scopes=SERVICE_SCOPES)
    await hosts.aclose()  # the inventory server stops
    try:
        fulfilments.inventory = InventoryClient(channel, StaticToken(token), 1.0)
        yield
    finally:
        fulfilments.inventory = real
        await channel.close()
        drop_database(postgres_admin_url, name)
