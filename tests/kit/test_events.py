"""Outbox, relay and consumers against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf import wrappers_pb2

from tenpo.kit.db import KIT_METADATA, Database, UnitOfWork, outbox_table
from tenpo.kit.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    Consumer,
    Event,
    EventBus,
    OutboxRelay,
    Subscription,
    stream_name,
)

app_metadata = sa.MetaData()
orders = sa.Table("orders", app_metadata, sa.Column("id", sa.Text, primary_key=True))
received = sa.Table(
    "received",
    app_metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
)


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(app_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)
    yield database
    await database.dispose()


@pytest.fixture
def service() -> str:
    # Each test gets its own stream, so tests never see each other's events.
    return f"kit{uuid.uuid4().hex[:10]}"


async def place_order(db: Database, order_id: str, service: str) -> uuid.UUID:
    async with db.unit_of_work() as uow:
        await uow.session.execute(sa.insert(orders).values(id=order_id))
        event_id = uow.add_event(wrappers_pb2.StringValue(value=order_id), service=service)
        await uow.commit()
    return event_id


def recording_subscription(service: str, durable: str, handler: Any = None) -> Subscription:
    async def record(uow: UnitOfWork, event: Event) -> None:
        order_id = event.parse(wrappers_pb2.StringValue).value
        await uow.session.execute(sa.insert(received).values(order_id=order_id))

    return Subscription(
        durable=durable,
        source_service=service,
        handlers={wrappers_pb2.StringValue: handler or record},
    )


async def received_ids(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(sa.select(received.c.order_id))).scalars())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def background(*coroutines: Awaitable[None]) -> AsyncIterator[None]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class CrashAfterPublish(OutboxRelay):
    async def _after_publish(self) -> None:
        raise RuntimeError("relay killed between publishing and marking")


async def test_rolled_back_work_leaves_no_event(db: Database, service: str) -> None:
    async with db.unit_of_work() as uow:
        await uow.session.execute(sa.insert(orders).values(id="o-1"))
        uow.add_event(wrappers_pb2.StringValue(value="o-1"), service=service)
        # no commit: leaving the block rolls back both the order and the event
    async with db.engine.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(outbox_table))
        ).scalar() == 0
        assert (await conn.execute(sa.select(sa.func.count()).select_from(orders))).scalar() == 0


async def test_relay_crash_between_publish_and_mark_has_one_effect(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    await place_order(db, "o-1", service)

    with pytest.raises(RuntimeError, match="killed"):
        await CrashAfterPublish(db, bus).publish_pending()
    async with db.engine.connect() as conn:
        pending = (
            await conn.execute(sa.select(outbox_table).where(outbox_table.c.published_at.is_(None)))
        ).all()
    assert len(pending) == 1, "the crashed relay must leave the row pending"

    # A new relay (after restart) publishes the leftover row again.
    assert await OutboxRelay(db, bus).publish_pending() == 1
    assert await OutboxRelay(db, bus).publish_pending() == 0
    info = await bus.js.stream_info(stream_name(service))
    assert info.state.messages == 1, "the broker must drop the re-sent copy by Nats-Msg-Id"

    consumer = Consumer(db, bus, recording_subscription(service, "orders-projection"))
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["o-1"]))
        await asyncio.sleep(0.5)
    assert await received_ids(db) == ["o-1"]
    await bus.close()


async def _has(db: Database, expected: list[str]) -> bool:
    return sorted(await received_ids(db)) == sorted(expected)


async def test_events_wait_out_a_broker_outage(
    db: Database, nats_factory: Callable[[], Any], service: str
) -> None:
    broker = nats_factory()
    bus = EventBus(broker.url)
    await bus.connect()
    await bus.ensure_stream(service)
    await place_order(db, "before-outage", service)

    relay = OutboxRelay(db, bus, poll_interval=0.1)
    consumer = Consumer(db, bus, recording_subscription(service, "outage-projection"))
    async with background(relay.run(), consumer.run()):
        await eventually(lambda: _has(db, ["before-outage"]))
        broker.stop()
        await place_order(db, "during-outage-1", service)
        await place_order(db, "during-outage-2", service)
        await asyncio.sleep(1.5)  # the relay keeps failing meanwhile
        async with db.engine.connect() as conn:
            pending = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(outbox_table)
                    .where(outbox_table.c.published_at.is_(None))
                )
            ).scalar()
        assert pending == 2
        broker.start()
        await eventually(
            lambda: _has(db, ["before-outage", "during-outage-1", "during-outage-2"]), timeout=30
        )
    await bus.close()


async def test_handler_crash_is_redelivered_and_applied_once(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    deliveries: list[int] = []

    async def flaky(uow: UnitOfWork, event: Event) -> None:
        deliveries.append(event.delivery)
        order_id = event.parse(wrappers_pb2.StringValue).value
        await uow.session.execute(sa.insert(received).values(order_id=order_id))
        if event.delivery == 1:
            raise RuntimeError("consumer process died mid-handler")

    await bus.ensure_stream(service)
    await place_order(db, "o-flaky", service)
    relay = OutboxRelay(db, bus, poll_interval=0.1)
    consumer = Consumer(db, bus, recording_subscription(service, "flaky", handler=flaky))
    async with background(relay.run(), consumer.run()):
        await eventually(lambda: _has(db, ["o-flaky"]))
        await asyncio.sleep(0.5)
    assert deliveries[:2] == [1, 2]
    assert await received_ids(db) == ["o-flaky"], "the failed attempt's write must roll back"
    await bus.close()


async def test_duplicate_delivery_of_one_event_id_applies_once(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    event_id = str(uuid.uuid4())
    payload = wrappers_pb2.StringValue(value="o-dup").SerializeToString()
    headers = {EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: "google.protobuf.StringValue"}
    subject = f"tenpo.{service}.string_value"
    # Two copies with distinct broker ids: past the dedupe window, only the inbox stops it.
    await bus.publish(subject, payload, headers, msg_id=f"{event_id}-a")
    await bus.publish(subject, payload, headers, msg_id=f"{event_id}-b")
    consumer = Consumer(db, bus, recording_subscription(service, "dup"))
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["o-dup"]))
        await asyncio.sleep(0.5)
    assert await received_ids(db) == ["o-dup"]
    await bus.close()


async def test_trace_context_travels_from_producer_to_consumer(
    db: Database, nats_url: str, service: str
) -> None:
    from opentelemetry import trace

    from tenpo.kit.settings import ServiceSettings
    from tenpo.kit.telemetry import configure_telemetry

    configure_telemetry(ServiceSettings(service_name="kit-test"))
    seen: list[int] = []

    async def remember_trace(uow: UnitOfWork, event: Event) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    with trace.get_tracer("test").start_as_current_span("checkout") as span:
        await place_order(db, "o-traced", service)
        trace_id = span.get_span_context().trace_id
    relay = OutboxRelay(db, bus, poll_interval=0.1)
    consumer = Consumer(db, bus, recording_subscription(service, "traced", handler=remember_trace))

    async def got_it() -> bool:
        return bool(seen)

    async with background(relay.run(), consumer.run()):
        await eventually(got_it)
    assert seen == [trace_id]
    await bus.close()


async def test_a_failing_event_in_a_batch_does_not_hold_back_the_others(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    orders_placed = [f"o-{i}" for i in range(8)]
    for order_id in orders_placed:
        await place_order(db, order_id, service)
    assert await OutboxRelay(db, bus).publish_pending() == len(orders_placed)
    attempts: dict[str, int] = {}

    async def picky(uow: UnitOfWork, event: Event) -> None:
        order_id = event.parse(wrappers_pb2.StringValue).value
        attempts[order_id] = attempts.get(order_id, 0) + 1
        await uow.session.execute(sa.insert(received).values(order_id=order_id))
        if order_id == "o-3" and event.delivery == 1:
            raise RuntimeError("poison on first delivery")

    consumer = Consumer(db, bus, recording_subscription(service, "batch", handler=picky))
    async with background(consumer.run()):
        await eventually(lambda: _has(db, orders_placed))
        await asyncio.sleep(0.5)
    assert sorted(await received_ids(db)) == sorted(orders_placed)  # each exactly once
    assert attempts["o-3"] >= 2
    await bus.close()


async def place_order_on_driver(db: Database, order_id: str, service: str) -> None:
    async with db.driver_unit_of_work() as uow:
        await uow.connection.execute("INSERT INTO orders (id) VALUES ($1)", order_id)
        uow.add_event(wrappers_pb2.StringValue(value=order_id), service=service)
        await uow.commit()


async def _count(db: Database, table: sa.Table) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_driver_unit_of_work_commits_rows_and_events_together(
    db: Database, nats_url: str, service: str
) -> None:
    await place_order_on_driver(db, "d-1", service)
    assert await _count(db, orders) == 1
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    assert await OutboxRelay(db, bus).publish_pending() == 1
    consumer = Consumer(db, bus, recording_subscription(service, "driver"))
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["d-1"]))
    await bus.close()


async def test_driver_unit_of_work_rolls_back_unless_committed(db: Database, service: str) -> None:
    async with db.driver_unit_of_work() as uow:
        await uow.connection.execute("INSERT INTO orders (id) VALUES ($1)", "d-gone")
        uow.add_event(wrappers_pb2.StringValue(value="d-gone"), service=service)

    async def fail_midway() -> None:
        async with db.driver_unit_of_work() as uow:
            await uow.connection.execute("INSERT INTO orders (id) VALUES ($1)", "d-gone-2")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()
    assert await _count(db, orders) == 0
    assert await _count(db, outbox_table) == 0


async def test_driver_unit_of_work_never_returns_a_connection_inside_a_transaction(
    db: Database, database_url: str
) -> None:
    # One pooled connection: whatever the next unit of work gets is the one used before.
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        started = asyncio.Event()

        async def stuck() -> None:
            async with db.driver_unit_of_work() as uow:
                await uow.connection.execute("INSERT INTO orders (id) VALUES ($1)", "d-stuck")
                started.set()
                await uow.connection.execute("SELECT pg_sleep(30)")

        task = asyncio.ensure_future(stuck())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()  # cancelled in the middle of a statement
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with db.driver_unit_of_work() as uow:
            assert uow.connection.is_in_transaction()  # our own, fresh one
            assert await uow.connection.fetchval("SELECT count(*) FROM orders") == 0
        async with db.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await db.dispose()


async def test_relay_publishes_commits_that_arrive_together_in_one_round(
    db: Database, nats_url: str, service: str
) -> None:
    rounds: list[int] = []

    class CountingRelay(OutboxRelay):
        async def publish_pending(self) -> int:
            published = await super().publish_pending()
            if published:
                rounds.append(published)
            return published

    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    # A long linger, so that nine commits sent together share a round even on a busy machine.
    relay = CountingRelay(db, bus, poll_interval=0.1, linger=5.0)
    consumer = Consumer(db, bus, recording_subscription(service, "lingering"))
    placed = [f"l-{i}" for i in range(10)]
    async with background(relay.run(), consumer.run()):
        await place_order(db, placed[0], service)
        await eventually(lambda: _has(db, placed[:1]))  # the first goes out at once
        await asyncio.gather(*(place_order(db, order_id, service) for order_id in placed[1:]))
        await eventually(lambda: _has(db, placed))
    assert rounds[0] == 1
    assert sum(rounds) == len(placed)
    assert len(rounds) <= 3, f"commits within the linger should share a round: {rounds}"
    info = await bus.js.stream_info(stream_name(service))
    assert info.state.messages == len(placed)
    await bus.close()


class CountingConsumer(Consumer):
    """A consumer that counts its fetches (an idle one times out on each)."""

    fetches = 0

    async def _subscribe(self) -> Any:
        pull = await super()._subscribe()
        fetch = pull.fetch

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.fetches += 1
            return await fetch(*args, **kwargs)

        pull.fetch = counted
        return pull


def _problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name} {r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.exc_info
    ]


async def test_an_idle_consumer_logs_no_warning(
    db: Database, nats_url: str, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    consumer = CountingConsumer(db, bus, recording_subscription(service, "idle"))
    async with background(consumer.run()):
        await eventually(lambda: _at_least(consumer.fetches, 3))  # two empty fetches done
    await bus.close()
    assert _problems(caplog) == []


async def _at_least(value: int, minimum: int) -> bool:
    return value >= minimum


async def test_a_broker_outage_is_logged_once_without_traceback_and_its_end_once(
    db: Database, nats_factory: Callable[[], Any], service: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = nats_factory()
    bus = EventBus(broker.url)
    await bus.run([service])
    relay = OutboxRelay(db, bus, poll_interval=0.1)
    consumer = Consumer(db, bus, recording_subscription(service, "outage-log"))
    async with background(relay.run(), consumer.run()):
        await place_order(db, "before", service)
        await eventually(lambda: _has(db, ["before"]))
        caplog.clear()
        broker.stop()
        # Several failed reconnection attempts, each of which used to log a traceback.
        await eventually(lambda: _at_least(bus.outage.failed_attempts, 4), timeout=30)
        await place_order(db, "during", service)
        broker.start()
        await eventually(lambda: _has(db, ["before", "during"]), timeout=30)
    await bus.close()
    assert _problems(caplog) == ["tenpo.kit.events WARNING event bus unavailable"]
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert back.count("event bus available again") == 1


def test_an_outage_log_reminds_at_most_every_interval_and_says_when_it_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tenpo.kit import outage

    now = [1000.0]
    monkeypatch.setattr(outage.time, "monotonic", lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="test.outage")
    log = outage.OutageLog(logging.getLogger("test.outage"), "broker", every=60)
    for _ in range(10):  # ten attempts within a few seconds
        log.failed(ConnectionRefusedError(111, "refused"))
        now[0] += 0.5
    now[0] += 60
    log.failed(ConnectionRefusedError(111, "refused"))
    log.recovered()
    log.recovered()  # no outage, nothing to say
    seen = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [s for s in seen if s[0] != "DEBUG"] == [
        ("WARNING", "broker unavailable"),
        ("WARNING", "broker still unavailable"),
        ("INFO", "broker available again"),
    ]
    assert "ConnectionRefusedError" in caplog.records[0].reason  # type: ignore[attr-defined]


async def test_a_slow_batch_is_kept_alive_and_not_redelivered_to_another_replica(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)

    async def slow(uow: UnitOfWork, event: Event) -> None:
        await asyncio.sleep(2.5)  # longer than the ack wait below
        order_id = event.parse(wrappers_pb2.StringValue).value
        await uow.session.execute(sa.insert(received).values(order_id=order_id))

    subscription = dataclasses.replace(
        recording_subscription(service, "slow", handler=slow), ack_wait_seconds=1.0
    )
    deliveries: list[int] = []

    class Replica(Consumer):
        async def handle_batch(self, messages: list[Any]) -> None:
            deliveries.extend(m.metadata.num_delivered for m in messages)
            await super().handle_batch(messages)

    # Two replicas on one durable: the idle one would receive a redelivery.
    first, second = Replica(db, bus, subscription), Replica(db, bus, subscription)
    await place_order(db, "o-slow", service)
    relay = OutboxRelay(db, bus, poll_interval=0.1)
    async with background(relay.run(), first.run(), second.run()):
        await eventually(lambda: _has(db, ["o-slow"]))
        await asyncio.sleep(1.5)  # past another ack wait: a redelivery would show now
    await bus.close()
    assert deliveries == [1]


async def test_a_durable_made_with_the_old_ack_wait_is_updated(
    db: Database, nats_url: str, service: str
) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    subscription = recording_subscription(service, "older")
    await bus.js.add_consumer(
        stream_name(service),
        ConsumerConfig(
            durable_name="older",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=subscription.max_deliver,
            filter_subjects=subscription.subjects(),
        ),
    )
    await place_order(db, "o-older", service)
    relay = OutboxRelay(db, bus, poll_interval=0.1)
    async with background(relay.run(), Consumer(db, bus, subscription).run()):
        await eventually(lambda: _has(db, ["o-older"]))
    info = await bus.js.consumer_info(stream_name(service), "older")
    await bus.close()
    assert info.config.ack_wait == subscription.ack_wait_seconds


async def test_relay_measures_backlog_delay_and_published_events(
    db: Database, nats_url: str, service: str
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tenpo.kit.events import (
        OUTBOX_BACKLOG,
        OUTBOX_DELAY,
        OUTBOX_OLDEST_AGE,
        OUTBOX_PUBLISHED,
    )

    reader = InMemoryMetricReader()
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    relay = OutboxRelay(db, bus, meter_provider=MeterProvider(metric_readers=[reader]))

    def values() -> dict[str, Any]:
        data = reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric.data.data_points[0]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    assert await relay.measure_backlog() == (0, 0.0)
    for order_id in ("m-1", "m-2", "m-3"):
        await place_order(db, order_id, service)
    waiting, oldest = await relay.measure_backlog()
    assert waiting == 3
    assert oldest > 0
    measured = values()
    assert measured[OUTBOX_BACKLOG].value == 3
    assert measured[OUTBOX_OLDEST_AGE].value == oldest
    assert await relay.publish_pending() == 3
    assert await relay.measure_backlog() == (0, 0.0)
    measured = values()
    assert measured[OUTBOX_PUBLISHED].value == 3
    assert measured[OUTBOX_DELAY].count == 3
    assert measured[OUTBOX_DELAY].min >= 0
    assert measured[OUTBOX_BACKLOG].value == 0
    await bus.close()


async def test_a_consumer_measures_its_lag_as_the_broker_counts_it(
    db: Database, nats_url: str, service: str
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tenpo.kit.events import CONSUMER_ACK_PENDING, CONSUMER_PENDING

    reader = InMemoryMetricReader()
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    durable = f"lag-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        db,
        bus,
        recording_subscription(service, durable),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    await bus.js.add_consumer(stream_name(service), consumer.config())

    def gauges() -> dict[str, tuple[int, dict[str, Any]]]:
        data = reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: (point.value, dict(point.attributes))
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        }

    assert await consumer.measure_lag() == (0, 0)
    for order_id in ("l-1", "l-2", "l-3"):
        await place_order(db, order_id, service)
    assert await OutboxRelay(db, bus).publish_pending() == 3
    assert await consumer.measure_lag() == (3, 0)
    value, attributes = gauges()[CONSUMER_PENDING]
    assert value == 3
    assert attributes == {
        "messaging.system": "nats",
        "messaging.destination.name": stream_name(service),
        "messaging.consumer.group.name": durable,
    }
    assert gauges()[CONSUMER_ACK_PENDING][0] == 0
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["l-1", "l-2", "l-3"]))
    assert await consumer.measure_lag() == (0, 0)
    assert gauges()[CONSUMER_PENDING][0] == 0
    await bus.close()


async def test_delivered_but_unacknowledged_messages_are_ack_pending(
    db: Database, nats_url: str, service: str
) -> None:
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    consumer = Consumer(db, bus, recording_subscription(service, f"ack-{uuid.uuid4().hex[:8]}"))
    await bus.js.add_consumer(stream_name(service), consumer.config())
    for order_id in ("a-1", "a-2"):
        await place_order(db, order_id, service)
    assert await OutboxRelay(db, bus).publish_pending() == 2
    pull = await bus.js.pull_subscribe_bind(
        durable=consumer.subscription.durable, stream=stream_name(service)
    )
    fetched = await pull.fetch(2, timeout=5)
    assert len(fetched) == 2
    assert await consumer.measure_lag() == (0, 2)
    for message in fetched:
        await message.ack()
    await eventually(lambda: _lag_is(consumer, (0, 0)))
    await bus.close()


async def _lag_is(consumer: Consumer, expected: tuple[int, int]) -> bool:
    return await consumer.measure_lag() == expected


async def test_the_bus_takes_a_cluster_as_a_comma_separated_url(
    nats_url: str, service: str
) -> None:
    from tenpo.devtools.stack import free_port

    # A node that is down first: the client moves on to the next one.
    bus = EventBus(f"nats://127.0.0.1:{free_port()}, {nats_url}")
    await bus.connect(timeout=20)
    try:
        await bus.ensure_stream(service)
        assert (await bus.js.stream_info(stream_name(service))).config.subjects == [
            f"tenpo.{service}.>"
        ]
    finally:
        await bus.close()


async def test_named_handlers_receive_events_a_build_has_no_proto_for(
    db: Database, nats_url: str, service: str
) -> None:
    """A consumer can listen for an event type by its full name alone (a producer's proto
    not merged yet): it subscribes to that subject and the handler gets the raw payload."""
    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)

    async def record(uow: UnitOfWork, event: Event) -> None:
        await uow.session.execute(
            sa.insert(received).values(order_id=f"{event.event_type}:{event.payload.decode()}")
        )

    subscription = Subscription(
        durable="named",
        source_service=service,
        handlers={"tenpo.later.v1.ReadyForPickup": record},
    )
    assert subscription.subjects() == [f"tenpo.{service}.ready_for_pickup"]
    for event_type, subject in (
        ("tenpo.later.v1.ReadyForPickup", f"tenpo.{service}.ready_for_pickup"),
        ("tenpo.later.v1.Other", f"tenpo.{service}.ready_for_pickup"),  # same subject, no handler
    ):
        event_id = str(uuid.uuid4())
        await bus.publish(
            subject,
            b"o-7",
            {EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: event_type},
            msg_id=event_id,
        )
    consumer = Consumer(db, bus, subscription)
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["tenpo.later.v1.ReadyForPickup:o-7"]))
    assert await received_ids(db) == ["tenpo.later.v1.ReadyForPickup:o-7"]
    await bus.close()


def test_a_handler_may_be_keyed_by_an_event_type_name_the_code_does_not_have_yet() -> None:
    async def handler(uow: UnitOfWork, event: Event) -> None:
        return None

    subscription = Subscription(
        durable="d",
        source_service="order",
        handlers={"tenpo.order.v1.ReturnReceived": handler, wrappers_pb2.StringValue: handler},
    )
    assert subscription.subjects() == ["tenpo.order.return_received", "tenpo.order.string_value"]
    assert subscription.handler_for("tenpo.order.v1.ReturnReceived") is handler
    assert subscription.handler_for("tenpo.order.v1.RefundIssued") is None


async def test_a_malformed_event_is_skipped_once_and_does_not_hold_up_the_next(
    db: Database, nats_url: str, service: str
) -> None:
    """A handler that finds the event malformed (InvalidArgument, or a payload that does not
    parse) can never succeed: its writes roll back, it is not redelivered, and the events
    behind it are applied."""
    from tenpo.kit.errors import InvalidArgument

    bus = EventBus(nats_url)
    await bus.connect()
    await bus.ensure_stream(service)
    attempts: dict[str, int] = {}

    async def strict(uow: UnitOfWork, event: Event) -> None:
        payload = event.payload.decode()
        attempts[payload] = attempts.get(payload, 0) + 1
        await uow.session.execute(sa.insert(received).values(order_id=payload))
        if payload.startswith("bad"):
            raise InvalidArgument("not an id", reason="ID_INVALID")

    subscription = Subscription(
        durable=f"strict-{uuid.uuid4().hex[:8]}",
        source_service=service,
        handlers={"tenpo.strict.v1.Thing": strict},
    )
    for payload in (b"bad-1", b"good-1", b"good-2"):
        event_id = str(uuid.uuid4())
        await bus.publish(
            f"tenpo.{service}.thing",
            payload,
            {EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: "tenpo.strict.v1.Thing"},
            msg_id=event_id,
        )
    consumer = Consumer(db, bus, subscription)
    async with background(consumer.run()):
        await eventually(lambda: _has(db, ["good-1", "good-2"]))
        # Tried in its batch, then alone (the batch's fallback); never again after that.
        tried = attempts["bad-1"]
        assert 1 <= tried <= 2
        await asyncio.sleep(1.5)  # a redelivery (backoff 0.2 s, 0.4 s, ...) would come by now
        assert attempts["bad-1"] == tried
        assert await consumer.measure_lag() == (0, 0)  # nothing pending, nothing unacknowledged
    assert sorted(await received_ids(db)) == ["good-1", "good-2"]  # bad-1's write rolled back
    await bus.close()
