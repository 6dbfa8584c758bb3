"""Computed segments and birthdays, through real NATS and PostgreSQL: memberships from the
order events, lapsed by time through the sweep, each change announced once (also with
concurrent sweepers), ListSegmentMembers, segments in the 360 view, erasure; BirthdayReached
once per customer and year with concurrent sweepers, leap-day birthdays on 28 February."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf.message import Message
from google.type import money_pb2

from services.customer.domain.segments import shop_date
from services.customer.models import customers
from services.customer.usecases.bundle import CustomerUseCases
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.customer.conftest import Service, bearer, expect_error


@dataclass
class Shop:
    service: Service
    bus: EventBus

    @property
    def cases(self) -> CustomerUseCases:
        return self.service.host.runtime.parts["use_cases"]  # type: ignore[no-any-return]

    def staff(self, *scopes: str) -> tuple[tuple[str, str], ...]:
        return bearer(
            self.service.tokens.mint(
                subject="staff-crm", kind="staff", scopes=list(scopes), channel="BACK_OFFICE"
            )
        )

    async def publish(self, message: Message) -> None:
        """As the order service's outbox relay would."""
        event_id = str(uuid.uuid4())
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

    async def place(self, customer_id: str, yen: int, channel: int) -> str:
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        await self.publish(
            order_events.OrderPlaced(
                order_id=order_id,
                order_number=f"N{order_id[-6:]}",
                customer_id=customer_id,
                channel=channel,  # type: ignore[arg-type]
                lines=[order_events.OrderEventLine(sku="SKU-1", quantity=1)],
                total=money_pb2.Money(currency_code="JPY", units=yen),
            )
        )
        return order_id

    async def segment_events(self, customer_id: str) -> list[tuple[str, str]]:
        entered = await self.service.events(events_pb2.SegmentEntered, customer_id)
        exited = await self.service.events(events_pb2.SegmentExited, customer_id)
        return sorted([("+", e.segment) for e in entered] + [("-", e.segment) for e in exited])

    async def until_events(self, customer_id: str, count: int) -> list[tuple[str, str]]:
        async with asyncio.timeout(30):
            while True:
                seen = await self.segment_events(customer_id)
                if len(seen) >= count:
                    return seen
                await asyncio.sleep(0.05)

    def later(self, days: float) -> Callable[[], None]:
        """Every use case's clock ``days`` ahead; returns the undo."""
        context = self.cases.context
        real = context.clock
        context.clock = lambda: real() + timedelta(days=days)

        def undo() -> None:
            context.clock = real

        return undo

    async def set_birthday(self, customer_id: str, born: date) -> None:
        async with self.service.db.engine.begin() as conn:
            await conn.execute(
                sa.update(customers)
                .where(customers.c.id == uuid.UUID(customer_id))
                .values(birthday=born)
            )


@pytest_asyncio.fixture(scope="module")
async def shop(service_factory: Callable[..., Any], nats_url: str) -> AsyncIterator[Shop]:
    service: Service = await service_factory(
        order_consumer=f"customer-order-{uuid.uuid4().hex[:8]}",
        segment_lapsed_after_days=180,
        segment_loyal_min_orders=3,
        segment_rules={"big_spender": {"min_twelve_month_spend_yen": 50_000}},
        # The background sweeps stay out of the way: the tests run them at chosen moments.
        engagement_sweep_interval_seconds=3600,
    )
    bus = EventBus(nats_url, name="test-customer-segments")
    await bus.connect()
    await bus.ensure_stream("order")
    try:
        yield Shop(service, bus)
    finally:
        await bus.close()


async def test_order_events_move_a_customer_through_the_segments_announcing_each_change(
    shop: Shop,
) -> None:
    customer_id, _, _ = await shop.service.register("seg")
    await shop.place(customer_id, 3_000, common_pb2.CHANNEL_WEB)
    assert await shop.until_events(customer_id, 1) == [("+", "first_time_buyer")]
    await shop.place(customer_id, 60_000, common_pb2.CHANNEL_POS)
    seen = await shop.until_events(customer_id, 5)
    assert seen == [
        ("+", "big_spender"),
        ("+", "first_time_buyer"),
        ("+", "omnichannel"),
        ("+", "repeat_buyer"),
        ("-", "first_time_buyer"),
    ]
    await shop.place(customer_id, 1_000, common_pb2.CHANNEL_POS)
    assert ("+", "loyal") in await shop.until_events(customer_id, 6)
    # Recomputing again (the sweep, a redelivery) announces nothing more.
    async with shop.cases.context.db.unit_of_work() as uow:
        assert await shop.cases.segments.recompute(uow, uuid.UUID(customer_id)) == (0, 0)
        await uow.commit()
    assert len(await shop.segment_events(customer_id)) == 6

    overview = await shop.service.customers.GetCustomer360(
        api.GetCustomer360Request(customer_id=customer_id),
        metadata=shop.staff("customers:overview"),
    )
    assert [s.segment for s in overview.segments] == [
        "big_spender",
        "loyal",
        "omnichannel",
        "repeat_buyer",
    ]
    assert all(s.customer_id == customer_id and s.enter_time.seconds > 0 for s in overview.segments)


async def test_lapsed_comes_by_time_once_even_with_concurrent_sweepers(shop: Shop) -> None:
    ids = []
    for _ in range(6):
        customer_id, _, _ = await shop.service.register("lapse")
        await shop.place(customer_id, 2_000, common_pb2.CHANNEL_APP)
        ids.append(customer_id)
    for customer_id in ids:
        await shop.until_events(customer_id, 1)
    undo = shop.later(179)
    try:
        await shop.cases.segments.sweep()  # not yet: 179 days < 180
    finally:
        undo()
    for customer_id in ids:
        assert await shop.segment_events(customer_id) == [("+", "first_time_buyer")]
    undo = shop.later(181)
    try:
        # Four sweepers at once, as four replicas: each change is made and announced once.
        await asyncio.gather(*(shop.cases.segments.sweep() for _ in range(4)))
        assert await shop.cases.segments.sweep() == 0
    finally:
        undo()
    for customer_id in ids:
        assert await shop.segment_events(customer_id) == [
            ("+", "first_time_buyer"),
            ("+", "lapsed"),
        ]
    # An order ends the lapse.
    await shop.place(ids[0], 2_000, common_pb2.CHANNEL_APP)
    seen = await shop.until_events(ids[0], 5)
    assert seen.count(("-", "lapsed")) == 1


async def test_list_segment_members_pages_for_staff_and_refuses_others(shop: Shop) -> None:
    members = []
    for _ in range(3):
        customer_id, _, auth = await shop.service.register("member")
        await shop.place(customer_id, 1_000, common_pb2.CHANNEL_WEB)
        members.append(customer_id)
    for customer_id in members:
        await shop.until_events(customer_id, 1)
    staff = shop.staff("customers:read")
    found: list[str] = []
    token = ""
    while True:
        page = await shop.service.customers.ListSegmentMembers(
            api.ListSegmentMembersRequest(
                segment="first_time_buyer", page_size=2, page_token=token
            ),
            metadata=staff,
        )
        assert len(page.members) <= 2
        found += [m.customer_id for m in page.members]
        token = page.next_page_token
        if not token:
            break
    assert set(members) <= set(found)
    assert found == sorted(found)  # by customer id
    await expect_error(
        shop.service.customers.ListSegmentMembers(
            api.ListSegmentMembersRequest(segment="first_time_buyer"), metadata=auth
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    details = await expect_error(
        shop.service.customers.ListSegmentMembers(
            api.ListSegmentMembersRequest(segment="whales"), metadata=staff
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SEGMENT_UNKNOWN",
    )
    assert details.field_violations[0].field == "segment"
    await expect_error(
        shop.service.customers.ListSegmentMembers(
            api.ListSegmentMembersRequest(segment="lapsed", page_token="garbage"),
            metadata=staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_birthdays_are_announced_once_per_customer_and_year_by_concurrent_sweepers(
    shop: Shop,
) -> None:
    # 28 February 2027 (no 29 February that year), 10:00 in Tokyo.
    moment = datetime(2027, 2, 28, 1, 0, tzinfo=UTC)
    born_today, born_leap, born_other = [(await shop.service.register("bday"))[0] for _ in range(3)]
    await shop.set_birthday(born_today, date(1990, 2, 28))
    await shop.set_birthday(born_leap, date(1992, 2, 29))
    await shop.set_birthday(born_other, date(1991, 3, 1))
    context = shop.cases.context
    real = context.clock
    context.clock = lambda: moment
    try:
        await asyncio.gather(*(shop.cases.segments.announce_birthdays() for _ in range(4)))
        assert await shop.cases.segments.announce_birthdays() == 0  # once a year
    finally:
        context.clock = real
    events = await shop.service.events(events_pb2.BirthdayReached)
    announced = [(e.customer_id, e.year) for e in events]
    assert announced.count((born_today, 2027)) == 1
    assert announced.count((born_leap, 2027)) == 1
    assert all(c != born_other for c, _ in announced)


async def test_a_birthday_month_segment_and_erasure_removes_every_segment(shop: Shop) -> None:
    customer_id, _, auth = await shop.service.register("month")
    now = datetime.now(UTC)
    await shop.set_birthday(customer_id, date(1985, shop_date(now).month, 1))
    await shop.cases.segments.sweep()  # gives customers with a birthday a review
    assert await shop.segment_events(customer_id) == [("+", "birthday_month")]
    await shop.service.customers.EraseCustomer(
        api.EraseCustomerRequest(customer_id=customer_id), metadata=auth
    )
    staff = shop.staff("customers:read")
    page = await shop.service.customers.ListSegmentMembers(
        api.ListSegmentMembersRequest(segment="birthday_month", page_size=1000), metadata=staff
    )
    assert customer_id not in [m.customer_id for m in page.members]
    # The events about her left the outbox with her erasure; later sweeps add none.
    assert await shop.segment_events(customer_id) == []
    await shop.cases.segments.sweep()
    assert await shop.segment_events(customer_id) == []
