"""Journeys through the API: defined as data, validated, paused and resumed, and left when
an exit event arrives (re-checked before every step)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import NotificationSettings
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import Harness, Stub, eventually, expect_error, staff

Service = tuple[ServiceHost[NotificationSettings], Stub]
TRIGGER = "tenpo.cart.v1.CartAbandoned"
ORDER_PLACED = "tenpo.order.v1.OrderPlaced"


def abandoned_cart_journey(wait_seconds: int = 2) -> pb.Journey:
    journey = pb.Journey(
        display_name="Abandoned cart",
        trigger_event=TRIGGER,
        exit_events=[ORDER_PLACED],
    )
    journey.steps.add(id="wait").wait.duration.seconds = wait_seconds
    send = journey.steps.add(id="mail").send
    send.template_key = "welcome"
    send.channel = pb.MESSAGE_CHANNEL_EMAIL
    return journey


async def test_invalid_journeys_are_refused_with_the_field(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    journey = abandoned_cart_journey()
    branch = journey.steps.add(id="b").branch
    branch.condition = pb.JOURNEY_CONDITION_LAST_MESSAGE_OPENED
    branch.if_true = "nowhere"
    await expect_error(
        stub.CreateJourney(api.CreateJourneyRequest(journey=journey), metadata=staff(tokens)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "JOURNEY_INVALID",
    )
    journey = abandoned_cart_journey()
    journey.steps[0].wait.duration.seconds = 0
    await expect_error(
        stub.CreateJourney(api.CreateJourneyRequest(journey=journey), metadata=staff(tokens)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "JOURNEY_INVALID",
    )


async def test_create_update_pause_resume(service: Service, tokens: Tokens) -> None:
    _, stub = service
    request = api.CreateJourneyRequest(journey=abandoned_cart_journey(), request_id="cart-1")
    created = (await stub.CreateJourney(request, metadata=staff(tokens))).journey
    again = (await stub.CreateJourney(request, metadata=staff(tokens))).journey
    assert again.id == created.id
    assert (created.state, created.version, [s.id for s in created.steps]) == (
        pb.JOURNEY_STATE_ACTIVE,
        1,
        ["wait", "mail"],
    )
    renamed = (
        await stub.UpdateJourney(
            api.UpdateJourneyRequest(journey=pb.Journey(id=created.id, display_name="Cart")),
            metadata=staff(tokens),
        )
    ).journey
    assert (renamed.display_name, renamed.version, len(renamed.steps)) == ("Cart", 2, 2)
    paused = (
        await stub.PauseJourney(api.PauseJourneyRequest(id=created.id), metadata=staff(tokens))
    ).journey
    assert paused.state == pb.JOURNEY_STATE_PAUSED
    resumed = (
        await stub.ResumeJourney(api.ResumeJourneyRequest(id=created.id), metadata=staff(tokens))
    ).journey
    assert resumed.state == pb.JOURNEY_STATE_ACTIVE


async def _event(host: ServiceHost[NotificationSettings], event_type: str, customer: str) -> None:
    assert host.runtime is not None
    journeys = host.runtime.parts["journeys"]
    async with host.runtime.db.unit_of_work() as uow:
        await journeys.on_event(
            uow, event_type, uuid.UUID(customer), str(uuid.uuid4()), datetime.now(UTC)
        )
        await uow.commit()
    journeys.due.set()


async def _status(host: ServiceHost[NotificationSettings], customer: str, journey: str) -> str:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        return str(
            (
                await uow.session.execute(
                    sa.select(m.journey_runs.c.status).where(
                        m.journey_runs.c.customer_id == uuid.UUID(customer),
                        m.journey_runs.c.journey_id == uuid.UUID(journey),
                    )
                )
            ).scalar_one()
        )


async def test_an_exit_event_ends_the_journey_before_its_next_step(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    host, stub = service
    created = await stub.CreateJourney(
        api.CreateJourneyRequest(journey=abandoned_cart_journey()), metadata=staff(tokens)
    )
    journey = created.journey.id
    stays, buys = harness.directory.add(), harness.directory.add()
    await _event(host, TRIGGER, stays)
    await _event(host, TRIGGER, buys)
    await _event(host, ORDER_PLACED, buys)

    async def both_done() -> None:
        assert await _status(host, stays, journey) == "completed"
        assert await _status(host, buys, journey) == "exited"

    async def mailed() -> None:
        # The journey's send step queues the mail; the delivery loop hands it to SMTP.
        assert len(harness.catcher.to(harness.directory.contacts[stays].email)) == 1

    await eventually(both_done)
    await eventually(mailed)
    assert harness.catcher.to(harness.directory.contacts[buys].email) == []
