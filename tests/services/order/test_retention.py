"""Failed checkouts are deleted once older than ORDER_FAILED_RETENTION_HOURS — the request_id's
stored answer is kept that long — and nothing else is: fresh failures, running sagas, failed
ones still compensating and every other status stay. Two sweepers at once delete each row
once (SKIP LOCKED, real PostgreSQL). Its own module, so its own order database: the sweeps
here see only this module's rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa

from services.order.domain.orders import OrderStatus, PaymentMethod
from services.order.domain.saga import SagaPhase
from services.order.store.orders import OrderStore
from services.order.usecases.retention import purge_failed
from tests.services.order.conftest import Stack
from tests.services.order.test_checkout import expect_error

pytestmark = pytest.mark.integration

#: The service's own sweep deletes after its retention (24 h); these tests age their rows
#: by an hour and sweep with a shorter retention, so the two never compete for a row.
AGE = timedelta(hours=1)
RETENTION = timedelta(minutes=30)


async def failed_checkouts(stack: Stack, count: int) -> list[str]:
    """``count`` real failed checkouts: an intruder placing another customer's cart, each
    time under a new request_id (CART_NOT_FOUND, a FAILED row each)."""
    sku = await stack.stock(5)
    owner, intruder = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(owner, (sku, 1))
    keys = [uuid.uuid4().hex for _ in range(count)]
    for request_id in keys:
        await expect_error(
            stack.orders.PlaceOrder(
                stack.place_request(cart, request_id=request_id),
                metadata=stack.customer(intruder),
            ),
            grpc.StatusCode.NOT_FOUND,
            "CART_NOT_FOUND",
        )
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text(
                "SELECT id, status, saga_phase FROM orders WHERE customer_id = :c AND cart_id = :k"
            ),
            {"c": intruder, "k": cart.id},
        )
        found = rows.all()
    assert len(found) == count
    assert {(r.status, r.saga_phase) for r in found} == {(int(OrderStatus.FAILED), "done")}
    return [str(r.id) for r in found]


async def other_rows(stack: Stack) -> list[str]:
    """One saga row in every other state (and FAILED still compensating), as the saga
    leaves them, for a customer of their own."""
    ids = []
    customer = f"c-{uuid.uuid4().hex[:8]}"
    states = [
        (status, SagaPhase.DONE) for status in OrderStatus if status is not OrderStatus.FAILED
    ]
    states += [
        (OrderStatus.FAILED, SagaPhase.COMPENSATING),
        (OrderStatus.PENDING, SagaPhase.FORWARD),
    ]
    async with stack.order_db.unit_of_work() as uow:
        store = OrderStore(uow.session)
        for status, phase in states:
            saga = await store.insert_pending(
                order_id=uuid.uuid4(),
                customer_id=customer,
                cart_id=str(uuid.uuid4()),
                cart_etag="e",
                payment_method=PaymentMethod.CARD,
                card_token="",
                request_key=uuid.uuid4().hex,
                request_hash=b"h",
                lease_owner="test",
                lease=timedelta(hours=1),
            )
            assert saga is not None
            await uow.session.execute(
                sa.text("UPDATE orders SET status = :s, saga_phase = :p WHERE id = :id"),
                {"s": int(status), "p": phase.value, "id": saga.order.id},
            )
            ids.append(str(saga.order.id))
        await uow.commit()
    return ids


async def age(stack: Stack, ids: list[str], by: timedelta) -> None:
    async with stack.order_db.unit_of_work() as uow:
        await uow.session.execute(
            sa.text(
                "UPDATE orders SET created_at = created_at - make_interval(secs => :by), "
                "updated_at = updated_at - make_interval(secs => :by) WHERE id = ANY(:ids)"
            ),
            {"by": by.total_seconds(), "ids": [uuid.UUID(i) for i in ids]},
        )
        await uow.commit()


async def existing(stack: Stack, ids: list[str]) -> set[str]:
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT id FROM orders WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(i) for i in ids]},
        )
        return {str(row.id) for row in rows}


async def test_old_failed_checkouts_go_fresh_ones_and_every_other_state_stay(
    stack: Stack,
) -> None:
    old = await failed_checkouts(stack, 3)
    fresh = await failed_checkouts(stack, 2)
    others = await other_rows(stack)
    await age(stack, old + others, AGE)

    deleted = await purge_failed(stack.order_db, RETENTION, batch=2)  # more than one batch

    assert deleted >= len(old)
    assert await existing(stack, old) == set()
    assert await existing(stack, fresh) == set(fresh)
    assert await existing(stack, others) == set(others)
    # Again: nothing more of ours goes.
    await purge_failed(stack.order_db, RETENTION)
    assert await existing(stack, fresh + others) == set(fresh + others)


async def test_a_retry_within_the_retention_still_gets_the_first_answer(stack: Stack) -> None:
    sku = await stack.stock(5)
    owner, intruder = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(owner, (sku, 1))
    request = stack.place_request(cart)
    for _ in range(2):
        await expect_error(
            stack.orders.PlaceOrder(request, metadata=stack.customer(intruder)),
            grpc.StatusCode.NOT_FOUND,
            "CART_NOT_FOUND",
        )
        await purge_failed(stack.order_db, RETENTION)
    async with stack.order_db.unit_of_work() as uow:
        count = await uow.session.scalar(
            sa.text("SELECT count(*) FROM orders WHERE customer_id = :c"), {"c": intruder}
        )
    assert count == 1  # answered from the one stored row, which the sweep left alone


async def test_two_sweepers_at_once_delete_each_failed_checkout_once(stack: Stack) -> None:
    ours = await failed_checkouts(stack, 40)
    await age(stack, ours, AGE)
    cutoff = datetime.now(UTC) - RETENTION
    start = asyncio.Event()

    async def sweeper() -> list[str]:
        taken: list[str] = []
        await start.wait()
        while True:
            async with stack.order_db.unit_of_work() as uow:
                batch = await OrderStore(uow.session).delete_failed(cutoff, 3)
                # Hold the rows a moment, so that the other sweeper runs meanwhile.
                await asyncio.sleep(0.01)
                await uow.commit()
            taken += [str(i) for i in batch]
            if not batch:
                return taken

    runs = [asyncio.ensure_future(sweeper()) for _ in range(2)]
    start.set()
    first, second = await asyncio.gather(*runs)

    assert not set(first) & set(second)  # no row deleted twice
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert set(ours) <= set(first) | set(second)
    assert first and second  # both took part (each batch is 3 of 40)
    assert await existing(stack, ours) == set()


async def test_a_customer_keeps_only_her_newest_failed_checkouts_each_deleted_once(
    stack: Stack,
) -> None:
    many = await failed_checkouts(stack, 7)  # oldest first (placed one after the other)
    few = await failed_checkouts(stack, 2)
    others = await other_rows(stack)
    newest = await newest_first(stack, many)
    keep = 3
    start = asyncio.Event()

    async def sweeper() -> list[str]:
        await start.wait()
        async with stack.order_db.unit_of_work() as uow:
            taken = await OrderStore(uow.session).delete_failed_beyond(keep, 100)
            await asyncio.sleep(0.01)  # hold the rows: the other sweeper runs meanwhile
            await uow.commit()
        return [str(i) for i in taken]

    runs = [asyncio.ensure_future(sweeper()) for _ in range(2)]
    start.set()
    first, second = await asyncio.gather(*runs)

    assert not set(first) & set(second)  # no row deleted twice
    assert await existing(stack, many) == set(newest[:keep])
    assert set(newest[keep:]) <= set(first) | set(second)
    assert await existing(stack, few) == set(few)
    assert await existing(stack, others) == set(others)
    # The sweep itself (retention far off) keeps the same.
    await purge_failed(stack.order_db, timedelta(days=30), keep_per_customer=keep)
    assert await existing(stack, many + few + others) == set(newest[:keep] + few + others)


async def newest_first(stack: Stack, ids: list[str]) -> list[str]:
    async with stack.order_db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.text("SELECT id FROM orders WHERE id = ANY(:ids) ORDER BY updated_at DESC, id DESC"),
            {"ids": [uuid.UUID(i) for i in ids]},
        )
        return [str(row.id) for row in rows]
