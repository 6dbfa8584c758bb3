"""The demo order history of ``make run``: three finished orders per demo customer across
web, app and a store's POS, readable through the API as hers; seeding again adds nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.order.seed import seed_demo_orders
from tenpo.common.v1 import common_pb2
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack

pytestmark = pytest.mark.integration


async def test_each_demo_customer_gets_a_finished_history_across_channels_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [str(uuid.uuid4()), str(uuid.uuid4())]
    (tmp_path / "dev-credentials.json").write_text(
        json.dumps(
            {
                "customers": [
                    {"email": f"Demo{i}@Example.jp", "password": "x", "id": customer}
                    for i, customer in enumerate(customers)
                ]
                # An entry without an id (an older customer seed) is skipped.
                + [{"email": "old@example.jp", "password": "x"}]
            }
        )
    )
    monkeypatch.setenv("TENPO_DATA_DIR", str(tmp_path))
    assert stack.order_host.runtime is not None
    settings = stack.order_host.runtime.settings

    assert await seed_demo_orders(settings, stack.order_db) == 6
    assert await seed_demo_orders(settings, stack.order_db) == 0  # seeded before

    listed = (
        await stack.orders.ListOrders(
            api.ListOrdersRequest(), metadata=stack.customer(customers[0])
        )
    ).orders
    assert [o.channel for o in listed] == [
        common_pb2.CHANNEL_POS,
        common_pb2.CHANNEL_APP,
        common_pb2.CHANNEL_WEB,
    ]  # newest first
    now = datetime.now(UTC)
    for order in listed:
        assert order.status == pb.ORDER_STATUS_COMPLETED
        assert order.payment_state == pb.PAYMENT_STATE_CAPTURED
        assert order.contact_email == "demo0@example.jp"
        assert order.create_time.ToDatetime(tzinfo=UTC) < now
        assert order.totals.total.units == sum(f.amount.units for f in order.fulfillments)
        assert all(f.capture_state == pb.CAPTURE_STATE_CAPTURED for f in order.fulfillments)
    assert [f.status for o in listed for f in o.fulfillments] == [
        pb.FULFILLMENT_STATUS_HANDED_OVER,
        pb.FULFILLMENT_STATUS_PICKED_UP,
        pb.FULFILLMENT_STATUS_DELIVERED,
    ]
    theirs = (
        await stack.orders.ListOrders(
            api.ListOrdersRequest(), metadata=stack.customer(customers[1])
        )
    ).orders
    assert len(theirs) == 3 and not {o.id for o in theirs} & {o.id for o in listed}
