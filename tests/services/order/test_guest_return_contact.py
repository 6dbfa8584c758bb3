"""A guest's return by mail reaches her: the real order service announces her return
authorization without her address (only that there is one), and the notification service's
own adapter, calling GetOrder as a service with ``orders:read``, gets it; without that scope
it gets nothing (the order answers like a missing one)."""

from __future__ import annotations

import uuid

import grpc
import pytest

from services.notification.contacts import GrpcOrders
from tenpo.kit.service_token import StaticToken
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack
from tests.services.order.test_guest import guest, picked_up_guest_order
from tests.services.order.test_return_events import published_once

pytestmark = pytest.mark.integration


async def test_a_guest_return_announces_a_contact_the_notification_service_may_read(
    stack: Stack,
) -> None:
    sku = await stack.stock(2, price=1800)
    placed = await picked_up_guest_order(stack, sku, 2)
    ask = api.RequestReturnRequest(
        order_id=placed.order.id,
        order_token=placed.order_token,
        lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
        request_id=uuid.uuid4().hex,
    )
    rma = (await stack.orders.RequestReturn(ask, metadata=guest())).return_authorization

    payload = await published_once(stack, "ReturnAuthorized", rma.id)
    event = ev.ReturnAuthorized.FromString(payload)
    assert (event.customer_id, event.has_contact_email) == ("", True)
    assert b"example.jp" not in payload.lower()  # no personal data in the stream

    assert stack.order_host.port is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.order_host.port}") as channel:

        def adapter(scopes: list[str]) -> GrpcOrders:
            token = stack.tokens.mint(subject="notification-service", kind="service", scopes=scopes)
            return GrpcOrders(channel, StaticToken(token), timeout_seconds=30.0)

        # The address she gave with the order (stored in lower case).
        assert await adapter(["orders:read"]).contact_email(event.order_id) == (
            "hanako.guest@example.jp"
        )
        assert await adapter(["customers:read"]).contact_email(event.order_id) is None
        assert await adapter(["orders:read"]).contact_email(str(uuid.uuid4())) is None
