"""LoyaltyService against real PostgreSQL and NATS: the ledger and its balance, earn rules,
holds that never overdraw under concurrency, reversal, oldest-first expiry, the balance
stream across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.type import money_pb2

from services.customer.app import definition
from services.customer.models import loyalty_accounts, loyalty_entries
from services.customer.store.loyalty import LoyaltyStore
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import loyalty_service_pb2 as api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as api_grpc
from tenpo.kit.db import Database
from tenpo.kit.server import running
from tests.services.customer.conftest import Service, bearer, expect_error


@dataclass
class Loyalty:
    service: Service
    stub: api_grpc.LoyaltyServiceStub
    order: tuple[tuple[str, str], ...]  # the order service's credentials

    def staff(self, *scopes: str) -> tuple[tuple[str, str], ...]:
        return bearer(
            self.service.tokens.mint(
                subject=f"staff-{uuid.uuid4().hex[:6]}",
                kind="staff",
                scopes=list(scopes),
                channel="BACK_OFFICE",
            )
        )

    async def earn(self, customer_id: str, yen: int, **fields: Any) -> api.EarnPointsResponse:
        fields.setdefault("reference", f"order-{uuid.uuid4().hex[:8]}")
        fields.setdefault("request_id", uuid.uuid4().hex)
        metadata = fields.pop("metadata", None) or self.order
        return await self.stub.EarnPoints(  # type: ignore[no-any-return]
            api.EarnPointsRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="JPY", units=yen),
                **fields,
            ),
            metadata=metadata,
        )

    async def balance(self, customer_id: str) -> api.LoyaltyBalance:
        response = await self.stub.GetBalance(
            api.GetBalanceRequest(customer_id=customer_id), metadata=self.order
        )
        return response.balance

    async def reserve(self, customer_id: str, points: int, **fields: Any) -> api.PointsReservation:
        fields.setdefault("request_id", uuid.uuid4().hex)
        response = await self.stub.ReservePoints(
            api.ReservePointsRequest(
                customer_id=customer_id, points=points, reference="order-x", **fields
            ),
            metadata=self.order,
        )
        return response.reservation

    async def ledger_sum_and_balance(self, customer_id: str) -> tuple[int, int]:
        async with self.service.db.engine.connect() as conn:
            summed = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(loyalty_entries.c.points), 0)).where(
                        loyalty_entries.c.customer_id == uuid.UUID(customer_id)
                    )
                )
            ).scalar_one()
            balance = (
                await conn.execute(
                    sa.select(loyalty_accounts.c.balance).where(
                        loyalty_accounts.c.customer_id == uuid.UUID(customer_id)
                    )
                )
            ).scalar_one()
        return int(summed), int(balance)


@pytest_asyncio.fixture(scope="module")
async def loyalty(service: Service) -> AsyncIterator[Loyalty]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        order = bearer(
            service.tokens.mint(
                subject="order", kind="service", scopes=["loyalty:write", "customers:read"]
            )
        )
        yield Loyalty(service, api_grpc.LoyaltyServiceStub(channel), order)


async def test_earning_records_the_entry_and_the_balance_is_the_ledger_sum(
    loyalty: Loyalty,
) -> None:
    customer_id, _, customer = await loyalty.service.register("earn")
    earned = await loyalty.earn(
        customer_id, 1280, channel=common_pb2.CHANNEL_POS, store_id="tokyo-shibuya"
    )
    # 100 yen per point, STANDARD x1, rounded down.
    assert earned.entry.points == 12
    assert earned.entry.kind == api.LEDGER_ENTRY_KIND_EARN
    assert earned.entry.channel == common_pb2.CHANNEL_POS
    assert earned.entry.store_id == "tokyo-shibuya"
    assert earned.entry.request_id
    assert earned.entry.HasField("expire_time")
    assert earned.balance.balance == 12 and earned.balance.available == 12

    # The customer reads it in the app at once.
    mine = await loyalty.stub.GetBalance(api.GetBalanceRequest(customer_id="me"), metadata=customer)
    assert mine.balance.balance == 12
    listed = await loyalty.stub.ListLedgerEntries(
        api.ListLedgerEntriesRequest(customer_id="me"), metadata=customer
    )
    assert [e.id for e in listed.entries] == [earned.entry.id]
    assert await loyalty.ledger_sum_and_balance(customer_id) == (12, 12)


async def test_a_retried_earn_answers_the_first_entry_and_a_reused_id_is_refused(
    loyalty: Loyalty,
) -> None:
    customer_id, _, _ = await loyalty.service.register("retry")
    first = await loyalty.earn(customer_id, 500, reference="order-1", request_id="earn-1")
    again = await loyalty.earn(customer_id, 500, reference="order-1", request_id="earn-1")
    assert again.entry.id == first.entry.id
    assert again.balance.balance == 5
    await expect_error(
        loyalty.earn(customer_id, 900, reference="order-1", request_id="earn-1"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    # The key is bound to the caller: another service choosing the same id earns anew.
    other = bearer(
        loyalty.service.tokens.mint(subject="pos-gw", kind="service", scopes=["loyalty:write"])
    )
    third = await loyalty.earn(
        customer_id, 500, reference="order-1", request_id="earn-1", metadata=other
    )
    assert third.entry.id != first.entry.id
    assert (await loyalty.balance(customer_id)).balance == 10


async def test_tier_multipliers_apply_and_bad_amounts_change_nothing(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("tier")
    await loyalty.earn(customer_id, 100)
    async with loyalty.service.db.engine.begin() as conn:
        await conn.execute(
            sa.update(loyalty_accounts)
            .where(loyalty_accounts.c.customer_id == uuid.UUID(customer_id))
            .values(tier="GOLD")
        )
    gold = await loyalty.earn(customer_id, 1000)
    assert gold.entry.points == 20  # x2.0
    details = await expect_error(
        loyalty.stub.EarnPoints(
            api.EarnPointsRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="USD", units=10),
                reference="o",
            ),
            metadata=loyalty.order,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_NOT_SUPPORTED",
    )
    assert details.field_violations[0].field == "amount.currency_code"
    await expect_error(
        loyalty.earn(customer_id, -5), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT"
    )
    await expect_error(
        loyalty.earn(customer_id, 1000, reference=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_REQUIRED",
    )
    assert (await loyalty.balance(customer_id)).balance == 21


async def test_customers_read_only_their_own_points_and_never_earn(loyalty: Loyalty) -> None:
    customer_id, _, customer = await loyalty.service.register("own")
    stranger_id, _, _ = await loyalty.service.register("stranger")
    await expect_error(
        loyalty.stub.GetBalance(api.GetBalanceRequest(customer_id=stranger_id), metadata=customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_error(
        loyalty.earn(customer_id, 1000, metadata=customer), grpc.StatusCode.PERMISSION_DENIED
    )
    await expect_error(
        loyalty.earn(customer_id, 1000, metadata=loyalty.staff("customers:read")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert (await loyalty.balance(customer_id)).balance == 0


async def test_reserve_commit_and_release(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("hold")
    await loyalty.earn(customer_id, 10_000)  # 100 points
    held = await loyalty.reserve(customer_id, 60, channel=common_pb2.CHANNEL_APP)
    assert held.state == api.RESERVATION_STATE_HELD
    after_hold = await loyalty.balance(customer_id)
    assert (after_hold.balance, after_hold.reserved, after_hold.available) == (100, 60, 40)
    await expect_error(
        loyalty.reserve(customer_id, 41), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS"
    )

    committed = await loyalty.stub.CommitReservation(
        api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
        metadata=loyalty.order,
    )
    assert committed.reservation.state == api.RESERVATION_STATE_COMMITTED
    assert committed.reservation.entry_id
    again = await loyalty.stub.CommitReservation(
        api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
        metadata=loyalty.order,
    )
    assert again.reservation.entry_id == committed.reservation.entry_id  # the saga retries
    after_commit = await loyalty.balance(customer_id)
    assert (after_commit.balance, after_commit.reserved) == (40, 0)

    second = await loyalty.reserve(customer_id, 30)
    released = await loyalty.stub.ReleaseReservation(
        api.ReleaseReservationRequest(customer_id=customer_id, reservation_id=second.id),
        metadata=loyalty.order,
    )
    assert released.reservation.state == api.RESERVATION_STATE_RELEASED
    await loyalty.stub.ReleaseReservation(  # twice: nothing more happens
        api.ReleaseReservationRequest(customer_id=customer_id, reservation_id=second.id),
        metadata=loyalty.order,
    )
    await expect_error(
        loyalty.stub.CommitReservation(
            api.CommitReservationRequest(customer_id=customer_id, reservation_id=second.id),
            metadata=loyalty.order,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_RELEASED",
    )
    final = await loyalty.balance(customer_id)
    assert (final.balance, final.reserved, final.available) == (40, 0, 40)
    kinds = [
        e.kind
        for e in (
            await loyalty.stub.ListLedgerEntries(
                api.ListLedgerEntriesRequest(customer_id=customer_id), metadata=loyalty.order
            )
        ).entries
    ]
    assert kinds == [api.LEDGER_ENTRY_KIND_REDEEM, api.LEDGER_ENTRY_KIND_EARN]
    assert await loyalty.ledger_sum_and_balance(customer_id) == (40, 40)


async def test_concurrent_redemptions_never_overdraw(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("race")
    await loyalty.earn(customer_id, 10_000)  # 100 points
    attempts = 25  # of 10 points each: at most 10 can succeed

    refusals: list[grpc.StatusCode] = []

    async def redeem() -> bool:
        try:
            held = await loyalty.reserve(customer_id, 10)
        except grpc.aio.AioRpcError as error:
            refusals.append(error.code())
            return False
        await loyalty.stub.CommitReservation(
            api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
            metadata=loyalty.order,
        )
        return True

    results = await asyncio.gather(*(redeem() for _ in range(attempts)))
    assert sum(results) == 10
    assert refusals == [grpc.StatusCode.FAILED_PRECONDITION] * (attempts - 10)
    final = await loyalty.balance(customer_id)
    assert (final.balance, final.reserved) == (0, 0)
    assert await loyalty.ledger_sum_and_balance(customer_id) == (0, 0)


async def test_the_hold_statement_alone_never_overdraws(loyalty: Loyalty) -> None:
    """The store's single-statement hold, in 25 concurrent transactions that take no other
    lock (not even the customer row the use case locks first)."""
    customer_id, _, _ = await loyalty.service.register("holdsql")
    await loyalty.earn(customer_id, 10_000)  # 100 points
    account = uuid.UUID(customer_id)
    db = Database(loyalty.service.host.settings.database_url, pool_size=25, max_overflow=0)
    started = asyncio.Barrier(25)

    async def hold() -> bool:
        async with db.unit_of_work() as uow:
            await uow.session.execute(sa.text("SELECT 1"))  # the transaction is open
            await started.wait()
            held = await LoyaltyStore(uow.session).hold(account, 10, datetime.now(UTC))
            await uow.commit()
        return held is not None

    try:
        assert sum(await asyncio.gather(*(hold() for _ in range(25)))) == 10
    finally:
        await db.dispose()
    async with loyalty.service.db.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(loyalty_accounts.c.balance, loyalty_accounts.c.reserved).where(
                    loyalty_accounts.c.customer_id == account
                )
            )
        ).one()
    assert tuple(row) == (100, 100)


async def test_a_reversal_takes_the_points_back_even_below_zero(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("return")
    earned = await loyalty.earn(customer_id, 10_000)  # 100
    held = await loyalty.reserve(customer_id, 80)
    await loyalty.stub.CommitReservation(
        api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
        metadata=loyalty.order,
    )
    reversed_ = await loyalty.stub.ReverseEntry(
        api.ReverseEntryRequest(customer_id=customer_id, entry_id=earned.entry.id),
        metadata=loyalty.order,
    )
    assert reversed_.entry.kind == api.LEDGER_ENTRY_KIND_REVERSE
    assert reversed_.entry.points == -100
    assert reversed_.entry.reference == earned.entry.id
    assert reversed_.balance.balance == -80  # recorded, not hidden
    assert reversed_.balance.available == 0
    twice = await loyalty.stub.ReverseEntry(
        api.ReverseEntryRequest(customer_id=customer_id, entry_id=earned.entry.id),
        metadata=loyalty.order,
    )
    assert twice.entry.id == reversed_.entry.id and twice.balance.balance == -80
    await expect_error(
        loyalty.stub.ReverseEntry(
            api.ReverseEntryRequest(customer_id=customer_id, entry_id=reversed_.entry.id),
            metadata=loyalty.order,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ENTRY_NOT_REVERSIBLE",
    )
    await expect_error(
        loyalty.reserve(customer_id, 1), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS"
    )
    assert await loyalty.ledger_sum_and_balance(customer_id) == (-80, -80)


async def test_staff_adjust_and_cannot_take_more_than_available(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("adjust")
    staff = loyalty.staff("loyalty:write", "customers:read")
    added = await loyalty.stub.AdjustPoints(
        api.AdjustPointsRequest(customer_id=customer_id, points=50, reason="goodwill"),
        metadata=staff,
    )
    assert added.entry.kind == api.LEDGER_ENTRY_KIND_ADJUST and added.balance.balance == 50
    await expect_error(
        loyalty.stub.AdjustPoints(
            api.AdjustPointsRequest(customer_id=customer_id, points=-51, reason="typo"),
            metadata=staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
    )
    await expect_error(
        loyalty.stub.AdjustPoints(
            api.AdjustPointsRequest(customer_id=customer_id, points=0, reason="x"),
            metadata=staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_POINTS",
    )
    taken = await loyalty.stub.AdjustPoints(
        api.AdjustPointsRequest(customer_id=customer_id, points=-20, reason="typo"),
        metadata=staff,
    )
    assert taken.balance.balance == 30


async def test_the_database_refuses_a_balance_that_is_not_the_ledger_sum(
    loyalty: Loyalty,
) -> None:
    customer_id, _, _ = await loyalty.service.register("sql")
    earned = await loyalty.earn(customer_id, 1000)
    with pytest.raises(sa.exc.DBAPIError, match="ledger sum"):
        async with loyalty.service.db.engine.begin() as conn:
            await conn.execute(
                sa.update(loyalty_accounts)
                .where(loyalty_accounts.c.customer_id == uuid.UUID(customer_id))
                .values(balance=loyalty_accounts.c.balance + 1)
            )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with loyalty.service.db.engine.begin() as conn:
            await conn.execute(
                sa.update(loyalty_entries)
                .where(loyalty_entries.c.id == uuid.UUID(earned.entry.id))
                .values(points=1000)
            )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with loyalty.service.db.engine.begin() as conn:
            await conn.execute(
                sa.delete(loyalty_entries).where(loyalty_entries.c.id == uuid.UUID(earned.entry.id))
            )
    assert await loyalty.ledger_sum_and_balance(customer_id) == (10, 10)


async def test_points_expire_oldest_first_and_held_points_wait(loyalty: Loyalty) -> None:
    runtime = loyalty.service.host.runtime
    assert runtime is not None
    cases = runtime.parts["use_cases"]
    customer_id, _, _ = await loyalty.service.register("expiry")
    old = await loyalty.earn(customer_id, 10_000)  # 100, earned now
    real_clock = cases.context.clock
    # The second lot is earned 200 days later; the first expires after 365 days.
    cases.context.clock = lambda: real_clock() + timedelta(days=200)
    try:
        await loyalty.earn(customer_id, 5_000)  # 50
        spent = await loyalty.reserve(customer_id, 30)
        await loyalty.stub.CommitReservation(
            api.CommitReservationRequest(customer_id=customer_id, reservation_id=spent.id),
            metadata=loyalty.order,
        )  # from the oldest lot: 70 of it left
        held = await loyalty.reserve(customer_id, 110)
        cases.context.clock = lambda: real_clock() + timedelta(days=366)
        assert await cases.loyalty.sweep() >= 1
        # The hold expired too (after 900 s) and was released first, so the whole rest of
        # the old lot expires: only the second lot's 50 are left.
        after = await loyalty.balance(customer_id)
        assert (after.balance, after.reserved) == (50, 0)
        await expect_error(
            loyalty.stub.CommitReservation(
                api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
                metadata=loyalty.order,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "RESERVATION_RELEASED",
        )
    finally:
        cases.context.clock = real_clock
    entries = (
        await loyalty.stub.ListLedgerEntries(
            api.ListLedgerEntriesRequest(customer_id=customer_id), metadata=loyalty.order
        )
    ).entries
    expired = [e for e in entries if e.kind == api.LEDGER_ENTRY_KIND_EXPIRE]
    assert [(e.points, e.reference) for e in expired] == [(-70, old.entry.id)]
    assert await loyalty.ledger_sum_and_balance(customer_id) == (50, 50)
    assert await cases.loyalty.sweep() == 0  # nothing left to do


async def test_expiry_never_takes_points_a_hold_keeps(loyalty: Loyalty) -> None:
    runtime = loyalty.service.host.runtime
    assert runtime is not None
    cases = runtime.parts["use_cases"]
    customer_id, _, _ = await loyalty.service.register("keep")
    await loyalty.earn(customer_id, 10_000)  # 100
    real_clock = cases.context.clock
    cases.context.clock = lambda: real_clock() + timedelta(days=365, minutes=-5)
    try:
        held = await loyalty.reserve(customer_id, 40)  # held until 10 minutes later
        cases.context.clock = lambda: real_clock() + timedelta(days=365, minutes=1)
        await cases.loyalty.sweep()
        after = await loyalty.balance(customer_id)
        assert (after.balance, after.reserved) == (40, 40)
        committed = await loyalty.stub.CommitReservation(
            api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.id),
            metadata=loyalty.order,
        )
        assert committed.reservation.state == api.RESERVATION_STATE_COMMITTED
    finally:
        cases.context.clock = real_clock
    assert await loyalty.ledger_sum_and_balance(customer_id) == (0, 0)


async def test_points_owed_after_a_return_do_not_expire_later_earnings(
    loyalty: Loyalty,
) -> None:
    runtime = loyalty.service.host.runtime
    assert runtime is not None
    cases = runtime.parts["use_cases"]
    customer_id, _, _ = await loyalty.service.register("owed")
    first = await loyalty.earn(customer_id, 10_000)  # lot A: 100
    await loyalty.earn(customer_id, 10_000)  # lot B: 100
    spent = await loyalty.reserve(customer_id, 150)  # A 100 + B 50
    await loyalty.stub.CommitReservation(
        api.CommitReservationRequest(customer_id=customer_id, reservation_id=spent.id),
        metadata=loyalty.order,
    )
    returned = await loyalty.stub.ReverseEntry(
        api.ReverseEntryRequest(customer_id=customer_id, entry_id=first.entry.id),
        metadata=loyalty.order,
    )
    assert returned.balance.balance == -50
    real_clock = cases.context.clock
    try:
        cases.context.clock = lambda: real_clock() + timedelta(days=300)
        await loyalty.earn(customer_id, 10_000)  # lot C: 100, expires on day 665
        cases.context.clock = lambda: real_clock() + timedelta(days=366)
        await cases.loyalty.sweep()
    finally:
        cases.context.clock = real_clock
    # B's last 50 were owed after the return: they do not expire C's points.
    assert (await loyalty.balance(customer_id)).balance == 50
    kinds = [
        e.kind
        for e in (
            await loyalty.stub.ListLedgerEntries(
                api.ListLedgerEntriesRequest(customer_id=customer_id), metadata=loyalty.order
            )
        ).entries
    ]
    assert api.LEDGER_ENTRY_KIND_EXPIRE not in kinds


async def test_the_ledger_pages_newest_first(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("pages")
    ids = [(await loyalty.earn(customer_id, 100 * (i + 1))).entry.id for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await loyalty.stub.ListLedgerEntries(
            api.ListLedgerEntriesRequest(customer_id=customer_id, page_size=2, page_token=token),
            metadata=loyalty.order,
        )
        seen.extend(e.id for e in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    await expect_error(
        loyalty.stub.ListLedgerEntries(
            api.ListLedgerEntriesRequest(customer_id=customer_id, page_token="garbage"),
            metadata=loyalty.order,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_watch_balance_sees_a_change_made_on_another_replica(loyalty: Loyalty) -> None:
    service = loyalty.service
    customer_id, _, customer = await service.register("watch")
    async with contextlib.AsyncExitStack() as stack:
        # A second replica on the same database and bus.
        replica = await stack.enter_async_context(running(definition, service.host.settings))
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}")
        )
        other = api_grpc.LoyaltyServiceStub(channel)
        stream = other.WatchBalance(api.WatchBalanceRequest(customer_id="me"), metadata=customer)
        first = await asyncio.wait_for(stream.read(), 10)
        assert first.snapshot and first.balance.balance == 0
        await loyalty.earn(customer_id, 4_200)  # on the first replica
        update = await asyncio.wait_for(stream.read(), 10)
        assert not update.snapshot
        assert update.balance.balance == 42 and update.balance.customer_id == customer_id
        held = await loyalty.reserve(customer_id, 2)
        update = await asyncio.wait_for(stream.read(), 10)
        assert (update.balance.balance, update.balance.reserved) == (42, 2)
        assert held.id
        stream.cancel()


async def test_a_stranger_cannot_watch_someone_elses_balance(loyalty: Loyalty) -> None:
    customer_id, _, _ = await loyalty.service.register("watched")
    _, _, stranger = await loyalty.service.register("peeker")
    stream = loyalty.stub.WatchBalance(
        api.WatchBalanceRequest(customer_id=customer_id), metadata=stranger
    )
    await expect_error(stream.read(), grpc.StatusCode.PERMISSION_DENIED)
