"""Points from orders, through real NATS and PostgreSQL: pending through the return window,
available after the sweep, reversed in proportion by returns (the provisional ReturnReceived
published here as the order service will), cancellations, idempotency per event and per
order or return id, exactness under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio
from google.protobuf.message import Message
from google.type import money_pb2

from services.customer.domain import earning as ed
from services.customer.usecases.bundle import CustomerUseCases
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import loyalty_service_pb2 as api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as api_grpc
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.customer.conftest import Service, bearer, expect_error


@dataclass
class Shop:
    service: Service
    stub: api_grpc.LoyaltyServiceStub
    bus: EventBus
    order: tuple[tuple[str, str], ...]

    @property
    def cases(self) -> CustomerUseCases:
        return self.service.host.runtime.parts["use_cases"]  # type: ignore[no-any-return]

    async def publish(self, message: Message, event_id: str | None = None) -> str:
        """As the order service's outbox relay would."""
        event_id = event_id or str(uuid.uuid4())
        await self.bus.publish(
            event_subject(message),
            message.SerializeToString(),
            {
                EVENT_ID_HEADER: event_id,
                EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
                OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
            },
            msg_id=event_id,
        )
        return event_id

    async def place(
        self, customer_id: str, yen: int, order_id: str | None = None, **fields: Any
    ) -> str:
        order_id = order_id or f"ord-{uuid.uuid4().hex[:10]}"
        fields.setdefault("channel", common_pb2.CHANNEL_WEB)
        await self.publish(
            order_events.OrderPlaced(
                order_id=order_id,
                order_number=f"N{order_id[-6:]}",
                customer_id=customer_id,
                lines=[order_events.OrderEventLine(sku="SKU-1", quantity=2)],
                total=money_pb2.Money(currency_code="JPY", units=yen),
                **fields,
            )
        )
        return order_id

    async def give_back(self, customer_id: str, order_id: str, yen: int, return_id: str) -> None:
        message = order_events.ReturnReceived(
            return_id=return_id,
            order_id=order_id,
            customer_id=customer_id,
            refund=money_pb2.Money(currency_code="JPY", units=yen),
        )
        await self.publish(message)

    async def balance(self, customer_id: str) -> api.LoyaltyBalance:
        response = await self.stub.GetBalance(
            api.GetBalanceRequest(customer_id=customer_id), metadata=self.order
        )
        return response.balance

    async def until(
        self, customer_id: str, check: Callable[[api.LoyaltyBalance], bool]
    ) -> api.LoyaltyBalance:
        async with asyncio.timeout(30):
            while True:
                seen = await self.balance(customer_id)
                if check(seen):
                    return seen
                await asyncio.sleep(0.05)

    async def later(self, days: float, then: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``then`` with every use case's clock ``days`` ahead."""
        context = self.cases.context
        real = context.clock
        context.clock = lambda: real() + timedelta(days=days)
        try:
            return await then()
        finally:
            context.clock = real


@pytest_asyncio.fixture(scope="module")
async def shop(service_factory: Callable[..., Any], nats_url: str) -> AsyncIterator[Shop]:
    service: Service = await service_factory(
        order_consumer=f"customer-order-{uuid.uuid4().hex[:8]}",
        loyalty_return_window_days=14,
        loyalty_tier_thresholds={"SILVER": 50_000, "GOLD": 200_000},
    )
    bus = EventBus(nats_url, name="test-customer-orders")
    await bus.connect()
    await bus.ensure_stream("order")
    order = bearer(
        service.tokens.mint(
            subject="order", kind="service", scopes=["loyalty:write", "customers:read"]
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        try:
            yield Shop(service, api_grpc.LoyaltyServiceStub(channel), bus, order)
        finally:
            await bus.close()


async def entries(shop: Shop, customer_id: str) -> list[api.LedgerEntry]:
    response = await shop.stub.ListLedgerEntries(
        api.ListLedgerEntriesRequest(customer_id=customer_id, page_size=200), metadata=shop.order
    )
    return list(response.entries)


async def test_an_order_earns_pending_points_once_that_become_available_after_the_window(
    shop: Shop,
) -> None:
    customer_id, _, _ = await shop.service.register("earn")
    order_id = await shop.place(
        customer_id, 12_345, channel=common_pb2.CHANNEL_POS, store_id="tokyo-shibuya"
    )
    seen = await shop.until(customer_id, lambda b: b.pending > 0)
    assert (seen.pending, seen.balance, seen.available) == (123, 0, 0)
    assert seen.twelve_month_spend.units == 12_345
    # The same order again (a second event id) and a redelivered event earn nothing more.
    await shop.place(customer_id, 12_345, order_id=order_id)
    marker = await shop.place(customer_id, 100)  # events are handled in order
    await shop.until(customer_id, lambda b: b.pending == 124)
    assert marker
    # Before the window ends the sweep leaves them pending; after it they are spendable.
    await shop.later(13, shop.cases.loyalty.sweep)
    assert (await shop.balance(customer_id)).pending == 124
    await shop.later(15, shop.cases.loyalty.sweep)
    after = await shop.balance(customer_id)
    assert (after.pending, after.balance, after.available) == (0, 124, 124)
    earned = [e for e in await entries(shop, customer_id) if e.reference == order_id]
    assert len(earned) == 1
    assert earned[0].kind == api.LEDGER_ENTRY_KIND_EARN
    assert earned[0].points == 123
    assert earned[0].channel == common_pb2.CHANNEL_POS
    assert earned[0].store_id == "tokyo-shibuya"
    assert await shop.later(16, shop.cases.loyalty.sweep) == 0  # nothing left to do


async def test_returns_in_the_window_lower_pending_points_in_proportion_once_per_return(
    shop: Shop,
) -> None:
    customer_id, _, _ = await shop.service.register("ret")
    order_id = await shop.place(customer_id, 10_000)  # 100 points
    await shop.until(customer_id, lambda b: b.pending == 100)
    await shop.give_back(customer_id, order_id, 3_333, "r1")
    await shop.until(customer_id, lambda b: b.pending == 67)  # floor(100 * 3333 / 10000)
    await shop.give_back(customer_id, order_id, 3_333, "r1")  # the same return again
    await shop.give_back(customer_id, order_id, 3_334, "r2")
    seen = await shop.until(customer_id, lambda b: b.pending == 34)  # 100 - floor(66.67)
    await shop.give_back(customer_id, order_id, 3_333, "r3")  # the rest: all of it back
    seen = await shop.until(customer_id, lambda b: b.pending == 0)
    assert seen.twelve_month_spend.units == 0
    await shop.later(15, shop.cases.loyalty.sweep)
    assert (await shop.balance(customer_id)).balance == 0
    assert [e for e in await entries(shop, customer_id) if e.reference == order_id] == []


async def test_a_return_after_the_window_reverses_in_the_ledger_even_below_zero(
    shop: Shop,
) -> None:
    customer_id, _, _ = await shop.service.register("late")
    order_id = await shop.place(customer_id, 20_000)  # 200 points
    await shop.until(customer_id, lambda b: b.pending == 200)
    await shop.later(15, shop.cases.loyalty.sweep)
    assert (await shop.balance(customer_id)).available == 200
    # She spends 150 of them, then returns three quarters of the order.
    held = await shop.stub.ReservePoints(
        api.ReservePointsRequest(
            customer_id=customer_id, points=150, reference="o2", request_id=uuid.uuid4().hex
        ),
        metadata=shop.order,
    )
    await shop.stub.CommitReservation(
        api.CommitReservationRequest(customer_id=customer_id, reservation_id=held.reservation.id),
        metadata=shop.order,
    )
    await shop.give_back(customer_id, order_id, 15_000, "late-1")
    seen = await shop.until(customer_id, lambda b: b.balance < 50)
    assert seen.balance == 50 - 150  # recorded, not hidden
    reversal = next(
        e for e in await entries(shop, customer_id) if e.kind == api.LEDGER_ENTRY_KIND_REVERSE
    )
    assert (reversal.points, reversal.reference) == (-150, "return late-1")
    # A manual reversal of the order's EARN entry takes only what returns left.
    earn = next(e for e in await entries(shop, customer_id) if e.reference == order_id)
    reversed_rest = await shop.stub.ReverseEntry(
        api.ReverseEntryRequest(
            customer_id=customer_id, entry_id=earn.id, request_id=uuid.uuid4().hex
        ),
        metadata=shop.order,
    )
    assert reversed_rest.entry.points == -50
    assert reversed_rest.balance.balance == -150
    # Another return of the order then reverses nothing more.
    await shop.give_back(customer_id, order_id, 5_000, "late-2")
    marker = await shop.place(customer_id, 100)
    await shop.until(customer_id, lambda b: b.pending == 1)
    assert marker
    assert (await shop.balance(customer_id)).balance == -150


async def test_a_cancelled_order_earns_nothing_and_counts_as_no_spend(shop: Shop) -> None:
    customer_id, _, _ = await shop.service.register("cancel")
    order_id = await shop.place(customer_id, 5_000)
    await shop.until(customer_id, lambda b: b.pending == 50)
    await shop.publish(order_events.OrderCancelled(order_id=order_id, customer_id=customer_id))
    seen = await shop.until(customer_id, lambda b: b.pending == 0)
    assert seen.twelve_month_spend.units == 0
    await shop.later(15, shop.cases.loyalty.sweep)
    assert (await shop.balance(customer_id)).balance == 0


async def test_malformed_and_foreign_order_events_are_skipped_and_the_rest_flows(
    shop: Shop,
) -> None:
    customer_id, _, _ = await shop.service.register("bad")
    await shop.publish(  # dollars: refused, acknowledged, never retried
        order_events.OrderPlaced(
            order_id="usd-1",
            customer_id=customer_id,
            total=money_pb2.Money(currency_code="USD", units=10),
        )
    )
    await shop.publish(  # not a customer id
        order_events.OrderPlaced(
            order_id="x-1", customer_id="nobody", total=money_pb2.Money(currency_code="JPY")
        )
    )
    await shop.place(str(uuid.uuid4()), 1_000)  # a customer not known here
    await shop.place("", 1_000)  # a guest
    await shop.place(customer_id, 700)
    seen = await shop.until(customer_id, lambda b: b.pending == 7)
    assert seen.twelve_month_spend.units == 700


async def test_concurrent_returns_of_one_order_reverse_exactly_their_share(shop: Shop) -> None:
    """Twenty returns of 500 yen each against one 10,000 yen order, in twenty concurrent
    transactions: together exactly all of its points, each return once."""
    customer_id, _, _ = await shop.service.register("conc")
    order_id = await shop.place(customer_id, 10_000)
    await shop.until(customer_id, lambda b: b.pending == 100)
    earning = shop.cases.earning
    db = shop.service.host.runtime.db

    async def give_back(n: int) -> None:
        async with db.unit_of_work() as uow:
            await earning.return_received(
                uow,
                ed.ReturnFacts(
                    return_id=f"{order_id}-r{n % 20}",  # every return twice
                    order_id=order_id,
                    customer_id=uuid.UUID(customer_id),
                    refund_yen=500,
                    units=0,
                    received_at=datetime.now(UTC),
                ),
            )
            await uow.commit()

    await asyncio.gather(*(give_back(n) for n in range(40)))
    seen = await shop.balance(customer_id)
    assert (seen.pending, seen.twelve_month_spend.units) == (0, 0)


async def test_concurrent_orders_all_earn(shop: Shop) -> None:
    customer_id, _, _ = await shop.service.register("many")
    earning = shop.cases.earning
    db = shop.service.host.runtime.db

    async def place(n: int) -> None:
        async with db.unit_of_work() as uow:
            await earning.order_placed(
                uow,
                ed.OrderFacts(
                    order_id=f"{customer_id}-{n % 15}",  # every order twice
                    order_number=str(n),
                    customer_id=uuid.UUID(customer_id),
                    channel=common_pb2.CHANNEL_APP,
                    store_id=None,
                    total_yen=1_000,
                    units=1,
                    placed_at=datetime.now(UTC),
                ),
            )
            await uow.commit()

    await asyncio.gather(*(place(n) for n in range(30)))
    seen = await shop.balance(customer_id)
    assert (seen.pending, seen.twelve_month_spend.units) == (150, 15_000)


async def test_bad_customer_reads_are_refused(shop: Shop) -> None:
    await expect_error(
        shop.stub.GetBalance(api.GetBalanceRequest(customer_id="x"), metadata=shop.order),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_tiers_follow_twelve_month_spend_with_a_grace_period_and_multiply_earning(
    shop: Shop,
) -> None:
    customer_id, _, own = await shop.service.register("tier")
    await shop.place(customer_id, 60_000)  # STANDARD x1: 600 points; then SILVER
    silver = await shop.until(customer_id, lambda b: b.tier == "SILVER")
    assert silver.pending == 600
    keep = silver.tier_keep_time.ToDatetime(tzinfo=UTC)
    assert keep > datetime.now(UTC) + timedelta(days=365)  # through the next period
    # The customer sees her tier too.
    mine = await shop.stub.GetBalance(api.GetBalanceRequest(customer_id="me"), metadata=own)
    assert (mine.balance.tier, mine.balance.twelve_month_spend.units) == ("SILVER", 60_000)
    await shop.place(customer_id, 10_000)  # SILVER x1.5
    await shop.until(customer_id, lambda b: b.pending == 750)
    # A year on, the orders have left the twelve months: the tier stays for the grace ...
    await shop.later(365 + 1 / 24, shop.cases.loyalty.sweep)
    grace = await shop.balance(customer_id)
    assert (grace.tier, grace.twelve_month_spend.units) == ("SILVER", 0)
    # ... and goes when it ends.
    days_to_keep = (keep - datetime.now(UTC)) / timedelta(days=1)
    await shop.later(days_to_keep + 1, shop.cases.loyalty.sweep)
    after = await shop.balance(customer_id)
    assert (after.tier, after.tier_keep_time.seconds) == ("STANDARD", 0)


async def test_the_balance_stream_shows_pending_points_and_the_tier_an_order_brings(
    shop: Shop,
) -> None:
    customer_id, _, own = await shop.service.register("stream")
    stream = shop.stub.WatchBalance(api.WatchBalanceRequest(customer_id="me"), metadata=own)
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.snapshot and (first.balance.pending, first.balance.tier) == (0, "STANDARD")
    await shop.place(customer_id, 70_000)
    async with asyncio.timeout(30):
        while True:
            update = await stream.read()
            if update.balance.tier == "SILVER":
                break
    assert update.balance.pending == 700
    stream.cancel()
