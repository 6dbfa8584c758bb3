"""Pickup codes at rest: the order database holds no code (a nonce and a keyed digest), the
customer is still shown hers, the POS checks it; codes an older release stored in plain
text become digests when the service starts and still verify."""

from __future__ import annotations

import uuid

import grpc
import pytest
import sqlalchemy as sa

from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import device, fulfilments_of, place

pytestmark = pytest.mark.integration


async def row_text(stack: Stack, fulfilment_id: str) -> str:
    """Every column of the fulfilment's row, as the database would hand it to a reader."""
    async with stack.order_db.unit_of_work() as uow:
        text = (
            await uow.session.execute(
                sa.text("SELECT f::text FROM fulfillments f WHERE id = :id"),
                {"id": fulfilment_id},
            )
        ).scalar_one()
        return str(text)


async def test_the_database_holds_no_code_yet_the_customer_sees_hers_and_the_pos_checks_it(
    stack: Stack,
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid),
        metadata=device(stack),
    )

    async def shown() -> str:
        got = await stack.orders.GetOrder(
            api.GetOrderRequest(order_id=order.id), metadata=stack.customer(customer)
        )
        return got.order.fulfillments[0].pickup.pickup_code

    code = await shown()
    assert len(code) == 8
    assert await shown() == code  # the app shows the same code every time
    assert code not in await row_text(stack, fid)
    picked = await stack.orders.ConfirmPickup(
        api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=code),
        metadata=device(stack),
    )
    assert picked.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_PICKED_UP


async def test_a_code_stored_in_plain_text_by_an_older_release_is_rekeyed_and_still_verifies(
    stack: Stack,
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    order = await place(stack, customer, cart_pb.FULFILLMENT_METHOD_PICKUP, (sku, 1))
    fid = order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid),
        metadata=device(stack),
    )
    legacy = "BCDFGHJK"
    # As the 0005 migration leaves a pickup made ready before it: the plain code aside.
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE fulfillments SET legacy_pickup_code = :code, pickup_nonce = NULL, "
                "pickup_code_digest = NULL WHERE id = :id"
            ),
            {"code": legacy, "id": fid},
        )
        await uow.commit()

    assert await fulfilments_of(stack).rekey_legacy_codes() >= 1
    assert await fulfilments_of(stack).rekey_legacy_codes() == 0  # nothing left to do
    assert legacy not in await row_text(stack, fid)
    await expect_error(
        stack.orders.ConfirmPickup(
            api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code="CCCCCCCC"),
            metadata=device(stack),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PICKUP_CODE_MISMATCH",
    )
    picked = await stack.orders.ConfirmPickup(
        api.ConfirmPickupRequest(order_id=order.id, fulfillment_id=fid, pickup_code=legacy),
        metadata=device(stack),
    )
    assert picked.order.fulfillments[0].status == pb.FULFILLMENT_STATUS_PICKED_UP
