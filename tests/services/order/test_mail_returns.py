"""Returns by mail against the real inventory and the sandbox PSP: a customer's return
authorization, nothing refunded until the parcel arrives, the parcel restocked where it
arrived and refunded once, concurrent requests never promising a unit twice, other
customers kept out, a dependency down at the receipt answered UNAVAILABLE and finished by
the retry."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa

from services.order.domain.orders import PaymentMethod
from services.order.domain.payments import PaymentProvider, PaymentUnavailable
from services.order.usecases.returns import Returns
from tenpo.devtools.keys import DevKeys
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import gateway_channel
from tests.services.order.conftest import STORE, Metadata, Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_fulfilments import OTHER_STORE, device, inventory_stopped
from tests.services.order.test_returns import refunds, shipped_order
from tests.services.order.test_store_fulfilment import atp_at

pytestmark = pytest.mark.integration


def returns_of(stack: Stack) -> Returns:
    assert stack.order_host.runtime is not None
    found: Returns = stack.order_host.runtime.parts["returns"]
    return found


def ask(order: pb.Order, sku: str, units: int, **fields: str) -> api.RequestReturnRequest:
    return api.RequestReturnRequest(
        order_id=order.id,
        lines=[pb.FulfillmentLine(sku=sku, quantity=units)],
        request_id=fields.pop("request_id", uuid.uuid4().hex),
        **fields,
    )


async def authorizations(
    stack: Stack, order: pb.Order, metadata: Metadata
) -> list[pb.ReturnAuthorization]:
    listed = await stack.orders.ListReturnAuthorizations(
        api.ListReturnAuthorizationsRequest(order_id=order.id), metadata=metadata
    )
    return list(listed.return_authorizations)


async def events_of(stack: Stack, order: pb.Order) -> tuple[list[tuple[str, int]], list[int]]:
    """The order's ReturnReceived (store, units) and RefundIssued (amounts) in the outbox."""
    received = [
        ev.ReturnReceived.FromString(p) for p in await stack.outbox_events("ReturnReceived")
    ]
    issued = [ev.RefundIssued.FromString(p) for p in await stack.outbox_events("RefundIssued")]
    return (
        [
            (e.store_id, sum(line.quantity for line in e.lines))
            for e in received
            if e.order_id == order.id
        ],
        [e.amount.units for e in issued if e.order_id == order.id],
    )


async def test_a_parcel_is_refunded_only_when_it_arrives_restocked_where_it_arrived(
    stack: Stack,
) -> None:
    order, sku = await shipped_order(stack, units=3, price=1000)
    owner = stack.customer(order.customer_id)
    request = ask(order, sku, 2, reason="TOO_SMALL")

    rma = (await stack.orders.RequestReturn(request, metadata=owner)).return_authorization

    assert rma.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED
    assert re.fullmatch(r"R-\d{6}", rma.number)
    assert (rma.order_number, rma.ship_to_location_id, rma.reason) == (
        order.order_number,
        STORE,  # the store that shipped the units
        "TOO_SMALL",
    )
    assert [(line.sku, line.quantity) for line in rma.lines] == [(sku, 2)]
    days = (rma.expire_time.ToDatetime(UTC) - datetime.now(UTC)) / timedelta(days=1)
    assert 13 < days <= 14
    assert not rma.HasField("order_return")
    # Nothing refunded or announced before the parcel arrives.
    assert await events_of(stack, order) == ([], [])
    # A retry is the same authorization; the same request_id for other units is refused.
    again = (await stack.orders.RequestReturn(request, metadata=owner)).return_authorization
    assert (again.id, again.number) == (rma.id, rma.number)
    reused = ask(order, sku, 1, request_id=request.request_id, reason="TOO_SMALL")
    await expect_error(
        stack.orders.RequestReturn(reused, metadata=owner),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    # The two units on their way are taken: neither a second request nor a store return
    # gets them (one unit is left).
    await expect_error(
        stack.orders.RequestReturn(ask(order, sku, 2), metadata=owner),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_RETURNABLE",
    )
    await expect_error(
        stack.return_at_store(order.id, OTHER_STORE, sku, 2),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_RETURNABLE",
    )

    # The parcel reaches another location than the label said, with one unit only: a device
    # there scans the number; restocked there, that unit refunded.
    before = await atp_at(stack, sku, OTHER_STORE)
    receipt = api.ReceiveReturnRequest(
        number=rma.number,
        location_id=OTHER_STORE,
        lines=[pb.FulfillmentLine(sku=sku, quantity=1)],
        request_id=uuid.uuid4().hex,
    )
    got = (
        await stack.orders.ReceiveReturn(receipt, metadata=device(stack, OTHER_STORE))
    ).return_authorization

    assert got.status == pb.RETURN_AUTHORIZATION_STATUS_REFUNDED
    returned = got.order_return
    assert returned.status == pb.RETURN_STATUS_COMPLETED
    assert (returned.store_id, returned.return_authorization_id) == (OTHER_STORE, rma.id)
    assert [(line.sku, line.quantity) for line in returned.lines] == [(sku, 1)]
    assert returned.refund.units == 1000
    assert await atp_at(stack, sku, OTHER_STORE) == before + 1
    assert await refunds(stack, returned.id) == [1000]
    assert await events_of(stack, order) == ([(OTHER_STORE, 1)], [1000])
    # The same receipt again: the same answer, nothing twice. Another receipt: refused.
    replay = (
        await stack.orders.ReceiveReturn(receipt, metadata=device(stack, OTHER_STORE))
    ).return_authorization
    assert replay == got
    second = api.ReceiveReturnRequest()
    second.CopyFrom(receipt)
    second.request_id = uuid.uuid4().hex
    await expect_error(
        stack.orders.ReceiveReturn(second, metadata=stack.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_ALREADY_RECEIVED",
    )
    assert await atp_at(stack, sku, OTHER_STORE) == before + 1
    assert await refunds(stack, returned.id) == [1000]
    assert await events_of(stack, order) == ([(OTHER_STORE, 1)], [1000])
    # She sees it refunded; the unit that never came is hers to return again (2 left).
    (shown,) = await authorizations(stack, order, owner)
    assert shown == got
    later = await stack.orders.RequestReturn(ask(order, sku, 2), metadata=owner)
    assert later.return_authorization.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED


async def test_concurrent_requests_and_store_returns_never_take_more_than_was_handed_over(
    stack: Stack,
) -> None:
    order, sku = await shipped_order(stack, units=2)
    owner = stack.customer(order.customer_id)

    async def by_mail() -> str:
        try:
            await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason
        return "OK"

    async def at_a_store() -> str:
        try:
            await stack.return_at_store(order.id, OTHER_STORE, sku)
        except grpc.aio.AioRpcError as error:
            return decode_error(error).reason
        return "OK"

    outcomes = await asyncio.gather(*(f() for _ in range(5) for f in (by_mail, at_a_store)))

    # A store return whose restock timed out (a busy machine) was recorded all the same: it
    # holds its unit, PENDING, like one that finished; one whose location check timed out
    # recorded nothing. Either is INVENTORY_UNAVAILABLE, so the units held are counted below.
    allowed = {"OK", "NOT_RETURNABLE", "INVENTORY_UNAVAILABLE", "PAYMENT_UNAVAILABLE"}
    assert set(outcomes) <= allowed, outcomes
    open_units = sum(
        line.quantity
        for a in await authorizations(stack, order, owner)
        if a.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED
        for line in a.lines
    )
    async with stack.order_db.unit_of_work() as uow:
        returned = (
            await uow.session.execute(
                sa.text(
                    "SELECT coalesce(sum((l->>'quantity')::int), 0) FROM order_returns, "
                    "jsonb_array_elements(lines) l WHERE order_id = :id"
                ),
                {"id": order.id},
            )
        ).scalar_one()
    held = open_units + returned
    assert held <= 2, outcomes
    assert outcomes.count("OK") <= held, outcomes
    if "NOT_RETURNABLE" in outcomes:
        assert held == 2, outcomes  # refused: both units were held, and holds stay


async def test_nobody_else_requests_lists_or_cancels_on_her_order(stack: Stack) -> None:
    order, sku = await shipped_order(stack, units=1)
    owner = stack.customer(order.customer_id)
    rma = (
        await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
    ).return_authorization
    someone = stack.customer(f"c-{uuid.uuid4().hex[:8]}")
    anonymous = gateway_channel("WEB")
    for metadata in (someone, device(stack), anonymous):
        await expect_error(
            stack.orders.RequestReturn(ask(order, sku, 1), metadata=metadata),
            grpc.StatusCode.NOT_FOUND,
            "ORDER_NOT_FOUND",
        )
    await expect_error(
        stack.orders.ListReturnAuthorizations(
            api.ListReturnAuthorizationsRequest(order_id=order.id), metadata=someone
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    await expect_error(
        stack.orders.CancelReturnAuthorization(
            api.CancelReturnAuthorizationRequest(order_id=order.id, return_authorization_id=rma.id),
            metadata=someone,
        ),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    # A customer's order opens with no token either.
    await expect_error(
        stack.orders.RequestReturn(ask(order, sku, 1, order_token="x" * 43), metadata=someone),
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    (mine,) = await authorizations(stack, order, owner)
    assert (mine.id, mine.status) == (rma.id, pb.RETURN_AUTHORIZATION_STATUS_REQUESTED)


async def test_windows_expiry_cancellation_and_bad_receipts_are_refused(stack: Stack) -> None:
    order, sku = await shipped_order(stack, units=3)
    owner = stack.customer(order.customer_id)
    rma = (
        await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
    ).return_authorization
    for receipt, code, reason in (
        (  # more than authorized
            api.ReceiveReturnRequest(
                return_authorization_id=rma.id,
                location_id=STORE,
                lines=[pb.FulfillmentLine(sku=sku, quantity=2)],
                request_id="a",
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "RETURN_LINES_NOT_AUTHORIZED",
        ),
        (  # both id and number
            api.ReceiveReturnRequest(
                return_authorization_id=rma.id, number=rma.number, location_id=STORE, request_id="b"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "RETURN_INVALID",
        ),
        (
            api.ReceiveReturnRequest(number="R-999999999", location_id=STORE, request_id="c"),
            grpc.StatusCode.NOT_FOUND,
            "RETURN_AUTHORIZATION_NOT_FOUND",
        ),
    ):
        await expect_error(stack.orders.ReceiveReturn(receipt, metadata=stack.staff), code, reason)
    await expect_error(  # a device receives for its own location only
        stack.orders.ReceiveReturn(
            api.ReceiveReturnRequest(number=rma.number, location_id=STORE, request_id="d"),
            metadata=device(stack, OTHER_STORE),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "STORE_MISMATCH",
    )
    await expect_error(
        stack.orders.RequestReturn(ask(order, sku, 1, reason="too small!"), metadata=owner),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RETURN_REASON_INVALID",
    )

    # Cancelled: its unit is returnable again, a parcel for it is refused.
    cancelled = (
        await stack.orders.CancelReturnAuthorization(
            api.CancelReturnAuthorizationRequest(order_id=order.id, return_authorization_id=rma.id),
            metadata=owner,
        )
    ).return_authorization
    assert cancelled.status == pb.RETURN_AUTHORIZATION_STATUS_CANCELLED
    await expect_error(
        stack.orders.ReceiveReturn(
            api.ReceiveReturnRequest(number=rma.number, location_id=STORE, request_id="e"),
            metadata=stack.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_AUTHORIZATION_CANCELLED",
    )

    # No parcel within its days: expired, units free again, a late parcel refused.
    late = (
        await stack.orders.RequestReturn(ask(order, sku, 3), metadata=owner)
    ).return_authorization
    await _move(stack, "return_authorizations", late.id, "expires_at", timedelta(days=-15))
    statuses = {a.id: a.status for a in await authorizations(stack, order, owner)}
    assert statuses[late.id] == pb.RETURN_AUTHORIZATION_STATUS_EXPIRED
    await expect_error(
        stack.orders.ReceiveReturn(
            api.ReceiveReturnRequest(number=late.number, location_id=STORE, request_id="f"),
            metadata=stack.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_AUTHORIZATION_EXPIRED",
    )

    # Authorized inside the window, arriving after it closed: taken (judged at the request).
    posted = (
        await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
    ).return_authorization
    await _move(stack, "orders", order.id, "created_at", timedelta(days=-40))
    await expect_error(
        stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_WINDOW_EXPIRED",
    )
    # Asked for on day 29 of the 30, the parcel arriving on day 40.
    await _move(stack, "return_authorizations", posted.id, "created_at", timedelta(days=-11))
    got = await stack.orders.ReceiveReturn(
        api.ReceiveReturnRequest(number=posted.number, location_id=STORE, request_id="g"),
        metadata=stack.staff,
    )
    assert got.return_authorization.status == pb.RETURN_AUTHORIZATION_STATUS_REFUNDED


async def _move(stack: Stack, table: str, row_id: str, column: str, by: timedelta) -> None:
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(f"UPDATE {table} SET {column} = {column} + :by WHERE id = :id"),  # noqa: S608
            {"by": by, "id": row_id},
        )
        await uow.commit()


class DownOnce:
    """The card PSP's refund endpoint not answering once, then the real sandbox."""

    def __init__(self, real: PaymentProvider) -> None:
        self.real = real
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    async def refund(self, key: str, *, authorization_key: str, amount: int) -> None:
        if self.failures:
            self.failures -= 1
            raise PaymentUnavailable("the provider did not answer")
        await self.real.refund(key, authorization_key=authorization_key, amount=amount)


@contextmanager
def psp_down_once(stack: Stack) -> Iterator[None]:
    returns = returns_of(stack)
    real = returns.payments
    returns.payments = {**real, PaymentMethod.CARD: DownOnce(real[PaymentMethod.CARD])}  # type: ignore[dict-item]
    try:
        yield
    finally:
        returns.payments = real


async def test_a_down_inventory_or_psp_at_the_receipt_is_unavailable_and_the_retry_finishes(
    stack: Stack, postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> None:
    order, sku = await shipped_order(stack, units=2, price=700)
    owner = stack.customer(order.customer_id)
    rma = (
        await stack.orders.RequestReturn(ask(order, sku, 2), metadata=owner)
    ).return_authorization
    receipt = api.ReceiveReturnRequest(
        return_authorization_id=rma.id, location_id=OTHER_STORE, request_id=uuid.uuid4().hex
    )
    before = await atp_at(stack, sku, OTHER_STORE)

    async with inventory_stopped(stack, postgres_admin_url, nats_url, dev_keys, returns_of(stack)):
        # Inventory cannot say the location exists: nothing is recorded yet.
        await expect_error(
            stack.orders.ReceiveReturn(receipt, metadata=stack.staff),
            grpc.StatusCode.UNAVAILABLE,
            "INVENTORY_UNAVAILABLE",
        )
    (waiting,) = await authorizations(stack, order, owner)
    assert waiting.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED
    assert not waiting.HasField("order_return")
    # Inventory is back, the PSP is not: the receipt is recorded and waits for the refund.
    with psp_down_once(stack):
        await expect_error(
            stack.orders.ReceiveReturn(receipt, metadata=stack.staff),
            grpc.StatusCode.UNAVAILABLE,
            "PAYMENT_UNAVAILABLE",
        )
        (shown,) = await authorizations(stack, order, owner)
        assert shown.status == pb.RETURN_AUTHORIZATION_STATUS_RECEIVED
        assert shown.order_return.status == pb.RETURN_STATUS_PENDING
        assert await refunds(stack, shown.order_return.id) == []
        done = (
            await stack.orders.ReceiveReturn(receipt, metadata=stack.staff)
        ).return_authorization

    assert done.status == pb.RETURN_AUTHORIZATION_STATUS_REFUNDED
    assert done.order_return.refund.units == 1400
    assert await refunds(stack, done.order_return.id) == [1400]
    assert await atp_at(stack, sku, OTHER_STORE) == before + 2
    assert await events_of(stack, order) == ([(OTHER_STORE, 2)], [1400])


async def test_a_return_at_a_location_inventory_does_not_have_records_nothing(
    stack: Stack,
) -> None:
    """Found from outside: staff receiving a parcel (or taking a store return) at a mistyped
    location got INVENTORY_UNAVAILABLE "retry" — but inventory refused the restock for good,
    so the authorization stayed RECEIVED and the return PENDING forever, holding its units.
    Now the location is refused before anything is recorded, and the units stay returnable."""
    order, sku = await shipped_order(stack, units=2, price=900)
    owner = stack.customer(order.customer_id)
    rma = (
        await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
    ).return_authorization
    for location in ("no-such-dc", "x" * 64, "TOKYO-SHIBUYA"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.orders.ReceiveReturn(
                api.ReceiveReturnRequest(
                    number=rma.number, location_id=location, request_id=uuid.uuid4().hex
                ),
                metadata=stack.staff,
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, location
        refused = decode_error(caught.value)
        assert refused.reason == "LOCATION_UNKNOWN"
        assert [v.field for v in refused.field_violations] == ["location_id"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.return_at_store(order.id, location, sku)
        assert decode_error(caught.value).reason == "LOCATION_UNKNOWN", location
    (waiting,) = await authorizations(stack, order, owner)
    assert waiting.status == pb.RETURN_AUTHORIZATION_STATUS_REQUESTED
    async with stack.order_db.unit_of_work() as uow:
        recorded = (
            await uow.session.execute(
                sa.text("SELECT count(*) FROM order_returns WHERE order_id = :id"),
                {"id": order.id},
            )
        ).scalar_one()
    assert recorded == 0
    # The same units are still there to take back: the parcel at a real store, the other
    # unit over its counter.
    received = (
        await stack.orders.ReceiveReturn(
            api.ReceiveReturnRequest(
                number=rma.number, location_id=OTHER_STORE, request_id=uuid.uuid4().hex
            ),
            metadata=stack.staff,
        )
    ).return_authorization
    assert received.status == pb.RETURN_AUTHORIZATION_STATUS_REFUNDED
    at_counter = await stack.return_at_store(order.id, OTHER_STORE, sku)
    assert at_counter.order_return.status == pb.RETURN_STATUS_COMPLETED


async def test_an_order_takes_a_bounded_number_of_authorizations_and_lists_them_all(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found from outside: request-and-cancel in a loop made authorizations without end;
    past the list's 100 the newest was shown nowhere and held no units, so the same unit
    got a second open authorization. Now the limit is the list's (3 here, to be quick)."""
    from services.order.store import mail_returns as store
    from services.order.usecases import mail_returns as usecase

    monkeypatch.setattr(store, "MAX_LISTED", 3)
    monkeypatch.setattr(usecase, "MAX_LISTED", 3)
    order, sku = await shipped_order(stack, units=1, price=800)
    owner = stack.customer(order.customer_id)
    for _ in range(3):
        last = (
            await stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner)
        ).return_authorization
        await stack.orders.CancelReturnAuthorization(
            api.CancelReturnAuthorizationRequest(
                order_id=order.id, return_authorization_id=last.id
            ),
            metadata=owner,
        )
    await expect_error(
        stack.orders.RequestReturn(ask(order, sku, 1), metadata=owner),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RETURN_AUTHORIZATION_LIMIT",
    )
    listed = await authorizations(stack, order, owner)
    assert [a.id for a in listed][-1] == last.id
    assert {a.status for a in listed} == {pb.RETURN_AUTHORIZATION_STATUS_CANCELLED}
    # The unit can still come back over a counter.
    at_counter = await stack.return_at_store(order.id, OTHER_STORE, sku)
    assert at_counter.order_return.status == pb.RETURN_STATUS_COMPLETED
