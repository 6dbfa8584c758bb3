"""The trace of the event that causes a message continues into the provider call, through
a journey run and in whichever replica sends it, and into Twilio's HTTP request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.notification.providers.ports import OutgoingEmail
from services.notification.providers.sms import TwilioSms
from tenpo.kit.db import event_subject
from tenpo.kit.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, OCCURRED_AT_HEADER, EventBus
from tenpo.kit.telemetry import configure_telemetry
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.notification.conftest import Harness, eventually
from tests.services.notification.providers.test_sms import FakeTwilio
from tests.services.notification.providers.test_sms import twilio as twilio

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PUBLISHER_SPAN = 0x00F067AA0BA902B7
REGISTERED = "tenpo.customer.v1.CustomerRegistered"


@dataclass
class TraceRecordingEmail:
    traces: dict[str, int] = field(default_factory=dict)

    async def send(self, mail: OutgoingEmail) -> str:
        self.traces[mail.to] = trace.get_current_span().get_span_context().trace_id
        return "recorded"


async def test_the_event_trace_reaches_the_provider_call(harness: Harness) -> None:
    email = TraceRecordingEmail()
    harness.email = email
    async with harness.start() as (host, _):
        assert host.runtime is not None
        customer = harness.directory.add()
        # As the consumer runs a handler: inside the span continued from the event.
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=TRACE_ID,
                span_id=0xB7AD6B7169203331,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
        token = context.attach(trace.set_span_in_context(parent))
        try:
            async with host.runtime.db.unit_of_work() as uow:
                await host.runtime.parts["journeys"].on_event(
                    uow, REGISTERED, uuid.UUID(customer), str(uuid.uuid4()), None
                )
                await uow.commit()
        finally:
            context.detach(token)
        address = harness.directory.contacts[customer].email

        async def sent() -> None:
            assert address in email.traces

        await eventually(sent)
        assert email.traces[address] == TRACE_ID


async def test_an_events_trace_links_the_consumer_the_journey_and_the_twilio_request(
    harness: Harness, buses: dict[str, EventBus], twilio: FakeTwilio
) -> None:
    """Over real NATS: a published OrderPlaced with a trace → the consumer's span → the
    journey step → the sender's span → Twilio's HTTP request, one trace, parent by parent
    (spans read from an in-memory exporter)."""
    sms = TwilioSms(
        base_url=f"http://127.0.0.1:{twilio.port}",
        account_sid="AC1",
        auth_token="secret",
        sender="+15005550006",
        timeout_seconds=2,
    )
    harness.sms = sms  # type: ignore[assignment]
    customer = harness.directory.add(phone="+819055556666")
    suffix = uuid.uuid4().hex[:8]
    exporter = InMemorySpanExporter()
    try:
        async with harness.start(
            order_consumer=f"notification-order-{suffix}",
            cart_consumer=f"notification-cart-{suffix}",
        ):
            configure_telemetry(harness.settings())  # as a served process does (once)
            provider = trace.get_tracer_provider()
            assert isinstance(provider, TracerProvider)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            placed = order_events.OrderPlaced(
                order_id=str(uuid.uuid4()), order_number="T-000321", customer_id=customer
            )
            event_id = str(uuid.uuid4())
            await buses["order"].publish(
                event_subject(placed),
                placed.SerializeToString(),
                {
                    EVENT_ID_HEADER: event_id,
                    EVENT_TYPE_HEADER: placed.DESCRIPTOR.full_name,
                    OCCURRED_AT_HEADER: datetime.now(UTC).isoformat(),
                    "traceparent": f"00-{TRACE_ID:032x}-{PUBLISHER_SPAN:016x}-01",
                },
                msg_id=event_id,
            )

            def ours() -> list[Any]:
                return [r for r in twilio.requests if r[2].get("To") == ["+819055556666"]]

            async def texted() -> None:
                assert len(ours()) == 1

            await eventually(texted)

            def spans() -> list[ReadableSpan]:
                return [
                    s
                    for s in exporter.get_finished_spans()
                    if s.context is not None and s.context.trace_id == TRACE_ID
                ]

            async def exported() -> None:
                assert "send sms" in {s.name for s in spans()}

            await eventually(exported)
    finally:
        await sms.close()
        exporter.shutdown()  # the processor stays with the process's provider: keep nothing
    by_id = {s.context.span_id: s for s in spans() if s.context is not None}
    [sent] = [s for s in by_id.values() if s.name == "send sms"]

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None
        return by_id[span.parent.span_id]

    # Parent by parent: the sender's span, the journey step that composed the SMS, the
    # consumer's span of the event, and the publisher's span the event's headers named.
    step = parent(sent)
    consumed = parent(step)
    assert (step.name, consumed.name) == ("journey step", "consume tenpo.order.v1.OrderPlaced")
    assert consumed.parent is not None and consumed.parent.span_id == PUBLISHER_SPAN
    assert sent.kind is trace.SpanKind.CLIENT
    [(_, headers, _)] = ours()
    assert headers["traceparent"] == f"00-{TRACE_ID:032x}-{sent.context.span_id:016x}-01"
