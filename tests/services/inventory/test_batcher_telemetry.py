"""The reservation batcher's telemetry, against real PostgreSQL: every reservation's events
carry the trace of the call that caused them, whichever worker task decided it and whichever
caller started that task; a refusal for stock is counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from services.inventory import domain as d
from services.inventory.app import definition
from services.inventory.usecases import Inventory, ReservationBatcher
from tenpo.inventory.v1 import events_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.kit import migrations
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import FailedPrecondition
from tenpo.kit.metrics import RESERVATIONS_REFUSED
from tests.services.inventory.conftest import add_demo_locations, new_sku

STORE = "tokyo-shibuya"
STAFF = Principal(
    kind=PrincipalKind.STAFF, subject="trace-test", scopes=frozenset({"inventory:write"})
)


@pytest_asyncio.fixture
async def inventory(database_url: str) -> AsyncIterator[Inventory]:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    await add_demo_locations(database_url)
    db = Database(database_url, pool_size=4, max_overflow=0)
    try:
        yield Inventory(db, require_known_skus=False)
    finally:
        await db.dispose()


@pytest_asyncio.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest_asyncio.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    # A provider of the test's own: the process-wide one belongs to whichever service
    # started first in this worker.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


async def stock(inventory: Inventory, sku: str, quantity: int) -> None:
    await inventory.stock.adjust(
        STAFF,
        sku=sku,
        location_id=STORE,
        quantity=quantity,
        reason=d.MovementReason.RECEIPT,
        note="",
        request_id=f"receipt-{sku}",
        request=api.AdjustStockRequest(sku=sku),
    )


def request(sku: str) -> d.ReservationRequest:
    return d.ReservationRequest(
        owner=f"carts/{sku}",
        lines=(d.Line(sku, 1, STORE),),
        ttl=timedelta(minutes=15),
        key="",
        fingerprint=b"",
        actor="staff:trace-test",
    )


async def event_traces(inventory: Inventory, skus: list[str]) -> dict[str, set[str]]:
    """The trace id in each outbox StockChanged row of the reservations, by SKU."""
    async with inventory.db.unit_of_work() as uow:
        rows = (
            await uow.session.execute(
                text(
                    "SELECT payload, headers FROM outbox "
                    "WHERE event_type = 'tenpo.inventory.v1.StockChanged'"
                )
            )
        ).all()
    found: dict[str, set[str]] = {sku: set() for sku in skus}
    for payload, headers in rows:
        event = events_pb2.StockChanged.FromString(payload)
        if event.sku not in found or event.reserved == 0:
            continue  # the receipt, made outside any caller span
        headers = json.loads(headers) if isinstance(headers, str) else headers
        found[event.sku].add(headers["traceparent"].split("-")[1])
    return found


def trace_id(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


async def reserve_in_span(
    batcher: ReservationBatcher, tracer: trace.Tracer, name: str, sku: str
) -> str:
    with tracer.start_as_current_span(name) as span:
        await batcher.submit(request(sku))
        return trace_id(span)


async def test_a_later_caller_is_not_given_the_trace_of_the_caller_who_started_the_workers(
    inventory: Inventory, tracer: trace.Tracer
) -> None:
    first, second = new_sku("TR"), new_sku("TR")
    for sku in (first, second):
        await stock(inventory, sku, 5)
    batcher = ReservationBatcher(inventory.reservations, workers=1, max_batch=500)
    try:
        # The first call creates the worker task (inside its span); the second comes later,
        # from another trace, and is decided by that same worker.
        first_trace = await reserve_in_span(batcher, tracer, "first caller", first)
        second_trace = await reserve_in_span(batcher, tracer, "second caller", second)
    finally:
        await batcher.close()
    assert first_trace != second_trace
    assert await event_traces(inventory, [first, second]) == {
        first: {first_trace},
        second: {second_trace},
    }


async def test_concurrent_callers_in_one_batch_each_get_their_own_trace(
    inventory: Inventory, tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    skus = [new_sku("TR") for _ in range(2)]
    for sku in skus:
        await stock(inventory, sku, 5)
    hot = new_sku("HOT")
    await stock(inventory, hot, 5)
    batcher = ReservationBatcher(inventory.reservations, workers=1, max_batch=500, tracer=tracer)
    try:
        # Both callers queue before the one worker (created by the first submit) runs, so
        # they are decided together in one transaction.
        traces = await asyncio.gather(
            *(reserve_in_span(batcher, tracer, f"caller {i}", sku) for i, sku in enumerate(skus))
        )
        # Two callers on one hot SKU in one batch: its single StockChanged belongs to the
        # one whose reservation produced the level it announces (the later one).
        hot_traces = await asyncio.gather(
            *(reserve_in_span(batcher, tracer, f"hot caller {i}", hot) for i in range(2))
        )
    finally:
        await batcher.close()
    assert len(set(traces)) == 2
    found = await event_traces(inventory, [*skus, hot])
    assert {sku: found[sku] for sku in skus} == {
        skus[0]: {traces[0]},
        skus[1]: {traces[1]},
    }
    assert found[hot] == {hot_traces[1]}
    batches: list[ReadableSpan] = [
        s for s in exporter.get_finished_spans() if s.name == "reservation batch"
    ]
    # The batch span is a trace of its own, linked to every caller it served.
    assert len(batches) == 2
    linked = [{format(link.context.trace_id, "032x") for link in b.links} for b in batches]
    assert linked == [set(traces), set(hot_traces)]
    for batch in batches:
        assert batch.context is not None
        assert format(batch.context.trace_id, "032x") not in {*traces, *hot_traces}
        assert batch.attributes is not None
        assert batch.attributes["tenpo.reservation.batch_size"] == 2


async def test_a_lone_request_is_decided_in_its_callers_trace(
    inventory: Inventory, tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    sku = new_sku("TR")
    await stock(inventory, sku, 5)
    batcher = ReservationBatcher(inventory.reservations, workers=2, max_batch=500, tracer=tracer)
    try:
        caller = await reserve_in_span(batcher, tracer, "lone caller", sku)
    finally:
        await batcher.close()
    assert await event_traces(inventory, [sku]) == {sku: {caller}}
    # No batch span: the work is simply part of the caller's trace.
    assert [s.name for s in exporter.get_finished_spans()] == ["lone caller"]
    assert caller != "0" * 32


async def test_a_reservation_refused_for_stock_is_counted_once_committed(
    database_url: str,
) -> None:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    await add_demo_locations(database_url)
    reader = InMemoryMetricReader()
    db = Database(database_url, pool_size=4, max_overflow=0, meter_provider=MeterProvider([reader]))
    inventory = Inventory(db, require_known_skus=False)
    try:
        sku = new_sku("TR")
        await stock(inventory, sku, 1)
        batcher = ReservationBatcher(inventory.reservations, workers=1, max_batch=500)
        try:
            await batcher.submit(request(sku))
            with pytest.raises(FailedPrecondition):
                await batcher.submit(request(sku))
        finally:
            await batcher.close()
    finally:
        await db.dispose()
    data = reader.get_metrics_data()
    assert data is not None
    refused = [
        (dict(point.attributes), point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == RESERVATIONS_REFUSED.name
        for point in metric.data.data_points
    ]
    assert refused == [({"reason": "INSUFFICIENT_STOCK"}, 1)]
