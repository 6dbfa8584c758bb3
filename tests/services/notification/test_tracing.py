"""The trace of the event that causes a message continues into the provider call, through
a journey run and in whichever replica sends it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from opentelemetry import context, trace

from services.notification.providers.ports import OutgoingEmail
from tests.services.notification.conftest import Harness, eventually

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
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
