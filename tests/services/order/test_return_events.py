"""A return by mail announces itself: ReturnAuthorized when it is authorized and
ReturnAuthorizationCancelled when it is withdrawn — each once however often (and however
concurrently) the request is retried, written with the change (the outbox) and published."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tenpo.common.v1 import common_pb2
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tests.services.order.conftest import Stack
from tests.services.order.test_mail_returns import ask
from tests.services.order.test_returns import shipped_order

pytestmark = pytest.mark.integration


async def events(stack: Stack, event_type: str, authorization_id: str) -> list[tuple[bytes, bool]]:
    """The authorization's events of that type in the outbox, with whether each was
    published."""
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT payload, published_at IS NOT NULL AS published FROM outbox "
                "WHERE event_type = :t"
            ),
            {"t": f"tenpo.order.v1.{event_type}"},
        )
        found = [(row.payload, row.published) for row in rows]
    parse = getattr(ev, event_type).FromString
    return [(p, sent) for p, sent in found if parse(p).return_authorization_id == authorization_id]


async def published_once(stack: Stack, event_type: str, authorization_id: str) -> bytes:
    """Its one event, once the relay has published it (polled, generous deadline)."""
    async with asyncio.timeout(60):
        while True:
            found = await events(stack, event_type, authorization_id)
            assert len(found) <= 1, found
            if found and found[0][1]:
                return found[0][0]
            await asyncio.sleep(0.2)


async def test_an_authorization_and_its_cancellation_are_announced_once(stack: Stack) -> None:
    order, sku = await shipped_order(stack, units=2)
    owner = stack.customer(order.customer_id)
    request = ask(order, sku, 2, reason="TOO_SMALL")
    # The same request five times at once: one authorization, one event.
    answers = await asyncio.gather(
        *(stack.orders.RequestReturn(request, metadata=owner) for _ in range(5))
    )
    rma = answers[0].return_authorization
    assert {a.return_authorization.id for a in answers} == {rma.id}

    authorized = ev.ReturnAuthorized.FromString(
        await published_once(stack, "ReturnAuthorized", rma.id)
    )
    assert (authorized.order_id, authorized.order_number) == (order.id, order.order_number)
    assert authorized.customer_id == order.customer_id
    assert authorized.channel == common_pb2.CHANNEL_APP
    assert (authorized.number, authorized.ship_to) == (rma.number, rma.ship_to_location_id)
    assert [(li.sku, li.quantity, li.location_id) for li in authorized.lines] == [
        (sku, 2, rma.ship_to_location_id)
    ]
    assert authorized.expire_time == rma.expire_time
    assert authorized.reason == "TOO_SMALL"
    assert authorized.has_contact_email is bool(order.contact_email)
    assert await events(stack, "ReturnAuthorizationCancelled", rma.id) == []

    cancel = api.CancelReturnAuthorizationRequest(order_id=order.id, return_authorization_id=rma.id)
    for _ in range(3):  # withdrawn once, the retries answer as the first
        await stack.orders.CancelReturnAuthorization(cancel, metadata=owner)
    cancelled = ev.ReturnAuthorizationCancelled.FromString(
        await published_once(stack, "ReturnAuthorizationCancelled", rma.id)
    )
    assert (cancelled.order_id, cancelled.number, cancelled.channel) == (
        order.id,
        rma.number,
        common_pb2.CHANNEL_APP,
    )
    # A new request for the units (they are returnable again) is its own authorization.
    again = (
        await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
    ).return_authorization
    assert again.id != rma.id
    await published_once(stack, "ReturnAuthorized", again.id)
    assert len(await events(stack, "ReturnAuthorized", rma.id)) == 1
