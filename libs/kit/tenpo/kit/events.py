"""Events: NATS JetStream streams, the outbox relay and idempotent durable consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
import sqlalchemy as sa
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import MeterProvider
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.db import Database, UnitOfWork, inbox_table, outbox_table, subject_for
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.metrics import SECONDS_BUCKETS
from tenpo.kit.outage import OutageLog

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tenpo.kit.events")

EVENT_ID_HEADER = "Tenpo-Event-Id"
EVENT_TYPE_HEADER = "Tenpo-Event-Type"
OCCURRED_AT_HEADER = "Tenpo-Occurred-At"
M = TypeVar("M", bound=Message)


def stream_name(service: str) -> str:
    return f"TENPO_{service.upper()}"


class EventBus:
    """A NATS connection with JetStream that reconnects on its own once connected.

    A service does not wait for the broker to start serving: ``run`` connects in the
    background however long the broker is away (the outbox keeps every event meanwhile),
    creates the service's stream and then opens the gate (``wait_connected``) that the relay
    and the consumers wait at; the gate closes while the connection is down. An outage is
    logged once, then at most every minute, and once when it ends."""

    #: Seconds between connection attempts while the broker is away (nats-py's own retry).
    RETRY_SECONDS = 1.0

    def __init__(self, url: str, *, replicas: int = 1, name: str = "tenpo") -> None:
        self.url = url
        self.replicas = replicas
        self.name = name
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._connected = asyncio.Event()
        self._broadcasts: list[tuple[str, Callable[[Msg], Awaitable[None]]]] = []
        self.outage = OutageLog(log, "event bus")
        self._closing = False

    async def connect(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a retry budget
        """Connect now, retrying for up to ``timeout`` seconds (then TimeoutError): for tools
        and tests. A service uses ``run`` instead."""
        try:
            async with asyncio.timeout(timeout):
                await self._open()
        except TimeoutError:
            raise TimeoutError(f"no NATS server answered within {timeout} s") from None
        self._connected.set()

    async def run(self, streams: Sequence[str] = ()) -> None:
        """Connect (retrying every ``RETRY_SECONDS`` until the broker answers), create
        ``streams`` (retrying with backoff), then open the gate. Returns when done; the
        connection then reconnects by itself."""
        if self._nc is None:
            await self._open()
        delay = 0.5
        for service in streams:
            while True:
                try:
                    await self.ensure_stream(service)
                    break
                except Exception as error:
                    self.outage.failed(error, stream=stream_name(service))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        self.outage.recovered()
        self._connected.set()
        log.info("event bus connected", extra={"streams": [stream_name(s) for s in streams]})

    async def _open(self) -> None:
        client = NATS()
        try:
            # With max_reconnect_attempts=-1 the first connect, too, retries until a server
            # answers; every failed attempt goes to the error callback, i.e. the outage log.
            await client.connect(
                # Several servers (a cluster's nodes), comma-separated, as NATS tools take them.
                [server.strip() for server in self.url.split(",") if server.strip()],
                name=self.name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=self.RETRY_SECONDS,  # type: ignore[arg-type]
                connect_timeout=2,
                allow_reconnect=True,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise
        # Registered so far; from the next line on, ``broadcast`` subscribes by itself.
        waiting = list(self._broadcasts)
        self._nc = client
        self._js = client.jetstream(timeout=5)
        for subject, deliver in waiting:
            await client.subscribe(subject, cb=deliver)

    async def _on_error(self, error: Exception) -> None:
        if not self._closing:
            self.outage.failed(error)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if not self._closing:  # closing on purpose is no outage
            self.outage.failed("disconnected")

    async def _on_reconnected(self) -> None:
        self._connected.set()
        self.outage.recovered()

    @property
    def connected(self) -> bool:
        """Connected, with the streams of ``run`` created."""
        return self._connected.is_set() and self._nc is not None and self._nc.is_connected

    async def wait_connected(self) -> None:
        """Return once ``connected``; the relay and consumers wait here during an outage
        instead of failing (and logging) attempt after attempt."""
        while not self.connected:
            if self._nc is not None and not self._nc.is_connected:
                self._connected.clear()  # in case a callback was missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), 1.0)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("EventBus is not connected yet")
        return self._js

    async def ensure_stream(self, service: str) -> None:
        """Create (or update) the stream that holds ``tenpo.<service>.>``. Both the owning
        service and its consumers call this, so start-up order does not matter."""
        config = StreamConfig(
            name=stream_name(service),
            subjects=[f"tenpo.{service}.>"],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            # Redeliveries by the relay within this window are dropped by the broker.
            duplicate_window=120.0,
            max_age=7 * 24 * 3600.0,
        )
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self.js.update_stream(config)

    async def publish(
        self, subject: str, payload: bytes, headers: Mapping[str, str], msg_id: str
    ) -> None:
        await self.js.publish(subject, payload, headers={**headers, "Nats-Msg-Id": msg_id})

    async def broadcast(
        self, subject: str, callback: Callable[[str, Mapping[str, str], bytes], Awaitable[None]]
    ) -> None:
        """Receive every message on ``subject`` in this process, outside any durable
        consumer: each replica sees each event (for cache invalidation), nothing is
        acknowledged or stored. Subscribed now if connected, else once connected."""

        async def deliver(message: Msg) -> None:
            try:
                await callback(message.subject, dict(message.headers or {}), message.data)
            except Exception:
                log.exception("broadcast handler failed", extra={"subject": message.subject})

        self._broadcasts.append((subject, deliver))
        if self._nc is not None:
            await self._nc.subscribe(subject, cb=deliver)

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            # Not drain(): consumers are cancelled before this, and drain would wait out its
            # timeout on their abandoned pull subscriptions. The relay awaits every ack, so
            # nothing is left unsent.
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = None
        self._js = None
        self._connected.clear()


#: Claims a batch of pending rows: they are marked inside the relay's transaction, which
#: commits only after the broker acknowledged every one, so a failure leaves them pending.
CLAIM_PENDING = """
UPDATE outbox SET published_at = now()
WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, seq, subject, event_type, payload, headers, occurred_at,
          extract(epoch FROM clock_timestamp() - occurred_at)::float8 AS age
"""
#: Rows waiting for the relay and the age of the oldest (seconds; NULL when none wait).
PENDING_BACKLOG = """
SELECT count(*) AS rows,
       extract(epoch FROM clock_timestamp() - min(occurred_at))::float8 AS oldest
FROM outbox WHERE published_at IS NULL
"""
#: Metric names (tenpo.kit.metrics has the request and database ones).
OUTBOX_PUBLISHED = "tenpo.outbox.published"
OUTBOX_DELAY = "tenpo.outbox.delay"
OUTBOX_BACKLOG = "tenpo.outbox.backlog"
OUTBOX_OLDEST_AGE = "tenpo.outbox.oldest_age"
#: Messages of a durable consumer's subjects the broker has not delivered yet: its lag.
CONSUMER_PENDING = "tenpo.consumer.pending"
#: Messages delivered to a durable consumer and not acknowledged yet (being handled, or
#: waiting for redelivery after a failure).
CONSUMER_ACK_PENDING = "tenpo.consumer.ack_pending"


class OutboxRelay:
    """Publishes every pending outbox row, oldest first, including rows left behind by a
    crash. Rows are claimed with SKIP LOCKED, so several workers can relay side by side;
    a row's mark commits only after the broker acknowledged it, and the broker drops a
    re-sent row by its ``Nats-Msg-Id``.

    Under load, commits that arrive within ``linger`` seconds of the last round share the
    next one: one claim, one burst of publishes and one commit for all of them, instead of
    a round per committing transaction. An event after a quiet spell goes out at once."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        linger: float = 0.02,
        retention_hours: float = 24.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.linger = linger
        self.retention_hours = retention_hours
        self.outage = OutageLog(log, "outbox relay")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("tenpo.kit")
        self._published = meter.create_counter(
            OUTBOX_PUBLISHED, unit="{event}", description="Events the relay published"
        )
        self._delay = meter.create_histogram(
            OUTBOX_DELAY,
            unit="s",
            description="From an event's commit to its relay",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._backlog = meter.create_gauge(
            OUTBOX_BACKLOG, unit="{event}", description="Events waiting in the outbox"
        )
        self._oldest = meter.create_gauge(
            OUTBOX_OLDEST_AGE, unit="s", description="Age of the oldest waiting event"
        )

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self.db.driver_unit_of_work() as uow:
            rows = sorted(
                await uow.connection.fetch(CLAIM_PENDING, self.batch_size),
                key=lambda row: row["seq"],
            )
            if not rows:
                return 0
            # Sent back to back on one connection, so the stream keeps the outbox order;
            # the acks are awaited together.
            await asyncio.gather(
                *(
                    self.bus.publish(
                        row["subject"],
                        row["payload"],
                        {
                            **_headers(row["headers"]),
                            EVENT_ID_HEADER: str(row["id"]),
                            EVENT_TYPE_HEADER: row["event_type"],
                            OCCURRED_AT_HEADER: row["occurred_at"].isoformat(),
                        },
                        msg_id=str(row["id"]),
                    )
                    for row in rows
                )
            )
            await self._after_publish()
            await uow.commit()
        for row in rows:
            self._delay.record(max(row["age"], 0.0))
        self._published.add(len(rows))
        return len(rows)

    async def measure_backlog(self) -> tuple[int, float]:
        """Record how many events wait and how old the oldest is (0 when none wait): a
        growing backlog or age means the relay or the broker is not keeping up."""
        async with self.db.driver_unit_of_work() as uow:
            row = await uow.connection.fetchrow(PENDING_BACKLOG)
        waiting, oldest = int(row["rows"]), max(row["oldest"] or 0.0, 0.0)
        self._backlog.set(waiting)
        self._oldest.set(oldest)
        return waiting, oldest

    async def _after_publish(self) -> None:
        """Hook between publishing and marking; tests use it to crash the relay there."""

    async def purge_published(self) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                sa.delete(outbox_table).where(
                    outbox_table.c.published_at
                    < sa.func.now() - sa.text(f"interval '{float(self.retention_hours)} hours'")
                )
            )

    async def run(self) -> None:
        """Relay until cancelled. Failures (broker down, database restart) back off and retry;
        nothing is lost because rows stay pending until acknowledged."""
        backoff = self.poll_interval
        last_purge = last_measure = 0.0
        loop = asyncio.get_running_loop()
        signal = self.db.outbox_signal
        while True:
            if not self.bus.connected:
                # The bus logs its own outage; rows wait in the outbox meanwhile.
                await self.bus.wait_connected()
            started = loop.time()
            # Cleared before looking: a commit from now on wakes the next round.
            signal.clear()
            try:
                published = await self.publish_pending()
                backoff = self.poll_interval
                self.outage.recovered()
                if loop.time() - last_purge > 600:
                    await self.purge_published()
                    last_purge = loop.time()
                if loop.time() - last_measure > BACKLOG_INTERVAL:
                    await self.measure_backlog()
                    last_measure = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.bus.connected:  # else the bus reports the outage
                    self.outage.failed(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published >= self.batch_size:
                continue  # a backlog: keep going
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), self.poll_interval)
            rest = self.linger - (loop.time() - started)
            if rest > 0:
                await asyncio.sleep(rest)


#: Seconds between two backlog measurements (one count over the pending rows' index).
BACKLOG_INTERVAL = 15.0
#: Seconds between two lag measurements of a durable consumer (one request to the broker).
LAG_INTERVAL = 15.0


def _headers(stored: Any) -> dict[str, str]:
    """The stored trace headers (jsonb arrives as text unless a codec decodes it)."""
    return dict(json.loads(stored) if isinstance(stored, str | bytes) else stored or {})


@dataclass(frozen=True)
class Event:
    """An event as delivered to a consumer."""

    id: uuid.UUID
    event_type: str
    subject: str
    payload: bytes
    occurred_at: datetime | None
    delivery: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)

    def parse(self, message_type: type[M]) -> M:
        return message_type.FromString(self.payload)


Handler = Callable[[UnitOfWork, Event], Awaitable[None]]


@dataclass
class Subscription:
    """What one durable consumer listens to: a producer's stream and handlers by event type.

    ``handlers`` maps proto message types to coroutines; events of other types on the same
    subjects are acknowledged and skipped. A key may also be an event type's full name
    (``"tenpo.order.v1.ReturnReceived"``): a consumer can then be wired, and tested with
    events it publishes itself, before the producer's message is in the generated code.
    """

    durable: str
    source_service: str
    handlers: Mapping[type[Message] | str, Handler]
    max_deliver: int = 20
    #: How long the broker waits for an ack before it redelivers: after a consumer crashed,
    #: the time its events wait for another replica (or its restart). Short, because a live
    #: consumer holding a slow batch keeps it with in-progress acks (``Consumer``), so a
    #: slow handler is not mistaken for a dead one.
    ack_wait_seconds: float = 5.0

    def subjects(self) -> list[str]:
        subjects = (subject_for(_type_name(t), self.source_service) for t in self.handlers)
        return list(dict.fromkeys(subjects))

    def handler_for(self, event_type: str) -> Handler | None:
        for message_type, handler in self.handlers.items():
            if _type_name(message_type) == event_type:
                return handler
        return None


def _type_name(message_type: type[Message] | str) -> str:
    return message_type if isinstance(message_type, str) else message_type.DESCRIPTOR.full_name


class Consumer:
    """Runs one Subscription: the handler's writes and the handled event id commit in one
    transaction, so redelivery (at-least-once) has exactly one effect. A failing handler
    rolls back and the message is redelivered with backoff; the error is never swallowed
    into an ack."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        subscription: Subscription,
        *,
        batch_size: int = 64,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.subscription = subscription
        self.batch_size = batch_size
        self.outage = OutageLog(log, f"event consumer {subscription.durable}")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("tenpo.kit")
        self._pending = meter.create_gauge(
            CONSUMER_PENDING,
            unit="{message}",
            description="Messages the broker has not delivered to the durable consumer yet",
        )
        self._ack_pending = meter.create_gauge(
            CONSUMER_ACK_PENDING,
            unit="{message}",
            description="Messages delivered to the durable consumer and not acknowledged yet",
        )
        self._attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": stream_name(subscription.source_service),
            "messaging.consumer.group.name": subscription.durable,
        }

    def config(self) -> ConsumerConfig:
        """The durable consumer as the broker keeps it (created or updated by ``run``)."""
        sub = self.subscription
        return ConsumerConfig(
            durable_name=sub.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=sub.max_deliver,
            ack_wait=sub.ack_wait_seconds,
            filter_subjects=sub.subjects(),
        )

    async def measure_lag(self) -> tuple[int, int]:
        """Record how many messages wait for this durable (not delivered yet) and how many
        are delivered but unacknowledged, as the broker counts them: every replica of a
        service reports the same durable, so dashboards take the maximum. A lag that grows
        means the consumers do not keep up (or are failing)."""
        info = await self.bus.js.consumer_info(
            stream_name(self.subscription.source_service), self.subscription.durable
        )
        pending, ack_pending = int(info.num_pending or 0), int(info.num_ack_pending or 0)
        self._pending.set(pending, self._attributes)
        self._ack_pending.set(ack_pending, self._attributes)
        return pending, ack_pending

    async def run(self) -> None:
        sub = self.subscription
        pull = await self._subscribe()
        loop = asyncio.get_running_loop()
        last_measure = -math.inf  # measured at once, then every LAG_INTERVAL
        while True:
            if not self.bus.connected:
                await self.bus.wait_connected()  # the bus logs the outage
            if loop.time() - last_measure > LAG_INTERVAL:
                last_measure = loop.time()
                # One request to the broker; a failure here is the fetch's to report.
                with contextlib.suppress(Exception):
                    await self.measure_lag()
            try:
                messages = await pull.fetch(self.batch_size, timeout=1.0)
            except TimeoutError:
                # Nothing arrived within the fetch's wait: an idle stream, not a failure
                # (nats-py raises its own TimeoutError or asyncio's, both TimeoutError).
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.bus.connected:  # else the bus reports the outage
                    self.outage.failed(error, durable=sub.durable)
                await asyncio.sleep(1.0)
                continue
            self.outage.recovered(durable=sub.durable)
            await self.handle_batch(messages)

    async def _subscribe(self) -> Any:
        """Create (or update) the durable consumer and bind to it, retrying while the
        broker is away or the producer's stream is being created."""
        sub = self.subscription
        config = self.config()
        delay = 0.5
        while True:
            await self.bus.wait_connected()
            try:
                await self.bus.ensure_stream(sub.source_service)
                await self.bus.js.add_consumer(stream_name(sub.source_service), config)
                pull = await self.bus.js.pull_subscribe_bind(
                    durable=sub.durable, stream=stream_name(sub.source_service)
                )
            except Exception as error:
                if self.bus.connected:  # else the bus reports the outage
                    self.outage.failed(error, durable=sub.durable)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.outage.recovered(durable=sub.durable)
            return pull

    async def handle_batch(self, messages: list[Msg]) -> None:
        """Apply a fetched batch in one transaction (a consumer catching up on a long stream
        would otherwise pay a commit per event); if any handler fails, the batch rolls back
        and its events are applied one by one, so only the failing one is redelivered.
        Handlers must therefore keep their effects inside the unit of work."""
        async with self._kept_alive(messages):
            await self._handle_batch(messages)

    @contextlib.asynccontextmanager
    async def _kept_alive(self, messages: list[Msg]) -> AsyncIterator[None]:
        """Tell the broker every third of the ack wait that the batch is still being worked
        on, so that only a consumer that died has its events redelivered."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(self.subscription.ack_wait_seconds / 3)
                for message in messages:
                    if not message._ackd:  # nats-py marks it on ack, nak and term
                        with contextlib.suppress(Exception):
                            await message.in_progress()

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()  # not awaited: a cancellation of our own must not be absorbed

    async def _handle_batch(self, messages: list[Msg]) -> None:
        ready: list[tuple[Msg, Event, Handler]] = []
        for message in messages:
            event = await self._parse(message)
            if event is None:
                continue
            handler = self.subscription.handler_for(event.event_type)
            if handler is None:
                await message.ack()
                continue
            ready.append((message, event, handler))
        if len(ready) > 1:
            try:
                async with self.db.unit_of_work() as uow:
                    for _, event, handler in ready:
                        with self._span(event):
                            if await self._claim(uow, event):
                                await handler(uow, event)
                    await uow.commit()
            except Exception:
                log.info(
                    "event batch failed; applying one by one",
                    extra={"durable": self.subscription.durable, "size": len(ready)},
                )
            else:
                for message, _, _ in ready:
                    await message.ack()
                return
        for message, event, handler in ready:
            await self._handle_one(message, event, handler)

    async def handle(self, message: Msg) -> None:
        """Apply one delivered message (parse, dispatch by type, ack or nak)."""
        event = await self._parse(message)
        if event is None:
            return
        handler = self.subscription.handler_for(event.event_type)
        if handler is None:
            await message.ack()
            return
        await self._handle_one(message, event, handler)

    async def _parse(self, message: Msg) -> Event | None:
        headers = dict(message.headers or {})
        try:
            return Event(
                id=uuid.UUID(headers[EVENT_ID_HEADER]),
                event_type=headers.get(EVENT_TYPE_HEADER, ""),
                subject=message.subject,
                payload=message.data,
                occurred_at=_parse_time(headers.get(OCCURRED_AT_HEADER)),
                delivery=message.metadata.num_delivered if message.metadata else 1,
                headers=headers,
            )
        except (KeyError, ValueError):
            log.error("malformed event dropped", extra={"subject": message.subject})
            await message.term()
            return None

    def _span(self, event: Event) -> Any:
        return tracer.start_as_current_span(
            f"consume {event.event_type}",
            context=propagate.extract(dict(event.headers)),
            kind=trace.SpanKind.CONSUMER,
        )

    async def _handle_one(self, message: Msg, event: Event, handler: Handler) -> None:
        with self._span(event):
            try:
                await self._apply(handler, event)
            except (InvalidArgument, DecodeError) as error:
                # A malformed event can never succeed: redelivering it would only hold up
                # the ones behind it. Its writes were rolled back; it is logged (ids only)
                # and never delivered again.
                log.warning(
                    "malformed event skipped",
                    extra={
                        "durable": self.subscription.durable,
                        "event_id": str(event.id),
                        "type": event.event_type,
                        "reason": getattr(error, "reason", "DECODE_ERROR"),
                    },
                )
                await message.term()
                return
            except Exception as error:
                # A database outage is one WARNING per outage; a failing handler is a bug.
                self.outage.background_failure(
                    error,
                    "event handler failed; will be redelivered",
                    durable=self.subscription.durable,
                    event_id=str(event.id),
                    delivery=event.delivery,
                )
                await message.nak(delay=min(0.1 * 2**event.delivery, 30.0))
                return
            self.outage.recovered()
        await message.ack()

    async def _claim(self, uow: UnitOfWork, event: Event) -> bool:
        """Record the event as handled by this consumer; False if it already was."""
        claimed = await uow.session.execute(
            pg.insert(inbox_table)
            .values(consumer=self.subscription.durable, event_id=event.id)
            .on_conflict_do_nothing()
            .returning(inbox_table.c.event_id)
        )
        return claimed.first() is not None

    async def _apply(self, handler: Handler, event: Event) -> None:
        async with self.db.unit_of_work() as uow:
            if not await self._claim(uow, event):
                return  # already applied: a redelivery after our ack was lost
            await handler(uow, event)
            await uow.commit()


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
