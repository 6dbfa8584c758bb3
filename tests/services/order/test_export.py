"""OrderService.ExportCustomerData: her orders with their fulfilments, nobody else's, no
credentials (card token, pickup code); the customer herself or staff with customers:read."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from tenpo.order.v1 import order_service_pb2 as api
from tests.services.order.conftest import Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import device
from tests.services.order.test_search import _delivered_order

pytestmark = pytest.mark.integration


def _own_session(stack: Stack, subject: str) -> tuple[tuple[str, str], ...]:
    """Her own app session (a session handed to a store device lacks profile:write)."""
    return stack.tokens.metadata(
        stack.tokens.mint(subject=subject, kind="customer", channel="APP", scopes=["profile:write"])
    )


async def test_a_customer_exports_her_orders_and_fulfilments_without_credentials(
    stack: Stack,
) -> None:
    her, someone = str(uuid.uuid4()), str(uuid.uuid4())
    email = f"hanako.{uuid.uuid4().hex[:6]}@example.jp"
    order = await _delivered_order(stack, her, email, "+819012345678")
    await _delivered_order(stack, someone, "someone@example.jp", "+819087654321")
    # Picked up, then one unit asked back by mail (her return authorization is hers too).
    fid = order.fulfillments[0].id
    await stack.orders.MarkReadyForPickup(
        api.MarkReadyForPickupRequest(order_id=order.id, fulfillment_id=fid),
        metadata=device(stack),
    )
    shown = await stack.orders.GetOrder(
        api.GetOrderRequest(order_id=order.id), metadata=stack.customer(her)
    )
    await stack.orders.ConfirmPickup(
        api.ConfirmPickupRequest(
            order_id=order.id,
            fulfillment_id=fid,
            pickup_code=shown.order.fulfillments[0].pickup.pickup_code,
        ),
        metadata=device(stack),
    )
    sent_back = await stack.orders.RequestReturn(
        api.RequestReturnRequest(
            order_id=order.id,
            lines=[order.fulfillments[0].lines[0]],
            request_id=uuid.uuid4().hex,
            reason="DAMAGED",
        ),
        metadata=stack.customer(her),
    )

    exported = await stack.orders.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id="me"), metadata=_own_session(stack, her)
    )
    assert exported.content_type == "application/json"
    document = json.loads(exported.json)
    assert (document["service"], document["customer_id"]) == ("order", her)
    [row] = document["tables"]["orders"]
    assert (row["id"], row["contact_email"]) == (order.id, email)
    assert "card_token" not in row and "request_hash" not in row
    assert [f["order_id"] for f in document["tables"]["fulfillments"]] == [order.id]
    for column in ("pickup_nonce", "pickup_code_digest", "legacy_pickup_code"):
        assert all(column not in f for f in document["tables"]["fulfillments"])
    [authorization] = document["tables"]["return_authorizations"]
    assert (authorization["number"], authorization["reason"]) == (
        sent_back.return_authorization.number,
        "DAMAGED",
    )
    assert "request_key" not in authorization
    assert "someone@example.jp" not in exported.json and someone not in exported.json

    staff = stack.tokens.metadata(
        stack.tokens.mint(subject="staff-dpo", kind="staff", scopes=["customers:read"])
    )
    by_staff = await stack.orders.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id=her), metadata=staff
    )
    assert json.loads(by_staff.json)["tables"]["orders"][0]["id"] == order.id
    await expect_error(
        stack.orders.ExportCustomerData(
            api.ExportCustomerDataRequest(customer_id=her),
            metadata=_own_session(stack, someone),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_RESOURCE_OWNER",
    )
    await expect_error(
        stack.orders.ExportCustomerData(
            api.ExportCustomerDataRequest(customer_id=her), metadata=stack.staff
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_SCOPE",
    )
