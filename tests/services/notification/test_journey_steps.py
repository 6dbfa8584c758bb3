"""Journey steps beyond send and wait: the A/B split (deterministic per customer, recorded on
the run), branches on "bought since entry?" and on segments computed from the order events
the service has seen, and the validation of each (INVALID_ARGUMENT with the field)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import NotificationSettings
from services.notification.domain import journeys as jd
from services.notification.domain.templates import Channel
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import Harness, Stub, eventually, staff

Service = tuple[ServiceHost[NotificationSettings], Stub]


def trigger() -> str:
    # A trigger of its own per test: seeded journeys never start on it.
    return f"tenpo.test.v1.Trigger{uuid.uuid4().hex[:8]}"


def send(step_id: str) -> pb.JourneyStep:
    return pb.JourneyStep(
        id=step_id,
        send=pb.SendStep(template_key="welcome", channel=pb.MESSAGE_CHANNEL_EMAIL),
    )


async def create(stub: Stub, tokens: Tokens, journey: pb.Journey) -> pb.Journey:
    request = api.CreateJourneyRequest(journey=journey)
    return (await stub.CreateJourney(request, metadata=staff(tokens))).journey


async def enter(host: ServiceHost[NotificationSettings], event_type: str, customer: str) -> None:
    assert host.runtime is not None
    journeys = host.runtime.parts["journeys"]
    async with host.runtime.db.unit_of_work() as uow:
        await journeys.on_event(
            uow, event_type, uuid.UUID(customer), str(uuid.uuid4()), datetime.now(UTC)
        )
        await uow.commit()
    journeys.due.set()


async def order(host: ServiceHost[NotificationSettings], customer: str, at: datetime) -> None:
    """What the order consumer does with an OrderPlaced."""
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        await host.runtime.parts["journeys"].order_placed(uow, uuid.UUID(customer), at)
        await uow.commit()


async def runs(host: ServiceHost[NotificationSettings], journey_id: str) -> dict[str, Any]:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.select(m.journey_runs).where(m.journey_runs.c.journey_id == uuid.UUID(journey_id))
        )
        return {str(r.customer_id): r for r in rows.all()}


# --- the A/B split ---------------------------------------------------------------------------


def test_a_split_is_deterministic_per_customer_and_follows_the_weights() -> None:
    split = jd.Split((jd.Variant("a", 3), jd.Variant("b", 1)))
    journey_id = uuid.uuid4()
    customers = [uuid.uuid4() for _ in range(2000)]
    first = [split.choose(journey_id, "ab", c).name for c in customers]
    assert first == [split.choose(journey_id, "ab", c).name for c in customers]
    share = first.count("a") / len(first)
    assert 0.65 < share < 0.85  # 3:1, by a hash: close to 0.75 for 2000 customers
    # Another step (or journey) splits the same customers independently.
    other = [split.choose(journey_id, "other", c).name for c in customers]
    assert other != first


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        ((jd.Variant("a"),), "journey.steps[0].split.variants"),
        ((jd.Variant("a"), jd.Variant("a")), "journey.steps[0].split.variants[0].name"),
        ((jd.Variant("A!"), jd.Variant("b")), "journey.steps[0].split.variants[0].name"),
        ((jd.Variant("a", 0), jd.Variant("b")), "journey.steps[0].split.variants[0].weight"),
        ((jd.Variant("a", 101), jd.Variant("b")), "journey.steps[0].split.variants[0].weight"),
        ((jd.Variant("a", 1, "nowhere"), jd.Variant("b")), "journey.steps[0].split.variants[0]"),
    ],
)
def test_invalid_splits_name_the_field(variants: tuple[jd.Variant, ...], field: str) -> None:
    journey = jd.Journey("x", "tenpo.x.v1.Y", (jd.Step("ab", jd.Split(variants)),))
    with pytest.raises(InvalidArgument) as caught:
        jd.validate(journey)
    assert caught.value.reason == "JOURNEY_INVALID"
    assert caught.value.field_violations[0].field.startswith(field)


async def test_a_split_sends_each_customer_down_their_variant_and_records_it(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    host, stub = service
    event = trigger()
    journey = await create(
        stub,
        tokens,
        pb.Journey(
            display_name="A/B",
            trigger_event=event,
            steps=[
                pb.JourneyStep(
                    id="ab",
                    split=pb.SplitStep(
                        variants=[
                            pb.SplitVariant(name="mail", weight=1, next_step="mail"),
                            pb.SplitVariant(name="none", weight=1, next_step="exit"),
                        ]
                    ),
                ),
                send("mail"),
            ],
        ),
    )
    assert [v.name for v in journey.steps[0].split.variants] == ["mail", "none"]
    customers = [harness.directory.add() for _ in range(12)]
    for customer in customers:
        await enter(host, event, customer)

    async def all_done() -> None:
        found = await runs(host, journey.id)
        assert len(found) == 12 and {r.status for r in found.values()} == {"completed"}

    await eventually(all_done)

    async def delivered() -> None:
        assert sum(
            len(harness.catcher.to(harness.directory.contacts[c].email)) for c in customers
        ) == sum(
            1 for r in (await runs(host, journey.id)).values() if r.data["variants"]["ab"] == "mail"
        )

    await eventually(delivered)
    split = jd.Split((jd.Variant("mail", 1, "mail"), jd.Variant("none", 1, "exit")))
    found = await runs(host, journey.id)
    for customer in customers:
        expected = split.choose(uuid.UUID(journey.id), "ab", uuid.UUID(customer)).name
        assert found[customer].data["variants"] == {"ab": expected}
        mails = harness.catcher.to(harness.directory.contacts[customer].email)
        assert len(mails) == (1 if expected == "mail" else 0)
    assert {r.data["variants"]["ab"] for r in found.values()} == {"mail", "none"}


# --- branches on what the order events said ---------------------------------------------------


def test_segments_come_from_order_count_and_recency() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert jd.segments_of(0, None, now) == {jd.Segment.NEVER_BOUGHT}
    assert jd.segments_of(1, now, now) == {jd.Segment.FIRST_TIME}
    assert jd.segments_of(3, now - timedelta(days=10), now) == {jd.Segment.REPEAT}
    assert jd.segments_of(3, now - timedelta(days=200), now) == {
        jd.Segment.REPEAT,
        jd.Segment.LAPSED,
    }


async def test_a_segment_branch_needs_a_known_segment(service: Service, tokens: Tokens) -> None:
    _, stub = service
    branch = pb.JourneyStep(
        id="b",
        branch=pb.BranchStep(condition=pb.JOURNEY_CONDITION_IN_SEGMENT, segment="VIP"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(
            stub, tokens, pb.Journey(display_name="x", trigger_event=trigger(), steps=[branch])
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = decode_error(caught.value)
    assert details.reason == "JOURNEY_INVALID"
    assert [v.field for v in details.field_violations] == ["journey.steps[0].branch.segment"]


async def test_branch_on_bought_since_entry_and_on_segment(
    harness: Harness, service: Service, tokens: Tokens
) -> None:
    host, stub = service
    bought_event, segment_event = trigger(), trigger()
    # Wait a second, then mail only those who did not buy since they entered.
    bought = await create(
        stub,
        tokens,
        pb.Journey(
            display_name="Nudge",
            trigger_event=bought_event,
            steps=[
                pb.JourneyStep(id="wait", wait=pb.WaitStep(duration={"seconds": 1})),
                pb.JourneyStep(
                    id="bought?",
                    branch=pb.BranchStep(
                        condition=pb.JOURNEY_CONDITION_BOUGHT_SINCE_ENTRY, if_true="exit"
                    ),
                ),
                send("mail"),
            ],
        ),
    )
    # Mail repeat customers only.
    repeat = await create(
        stub,
        tokens,
        pb.Journey(
            display_name="Repeat",
            trigger_event=segment_event,
            steps=[
                pb.JourneyStep(
                    id="repeat?",
                    branch=pb.BranchStep(
                        condition=pb.JOURNEY_CONDITION_IN_SEGMENT,
                        segment="REPEAT",
                        if_false="exit",
                    ),
                ),
                send("mail"),
            ],
        ),
    )
    buys, waits = harness.directory.add(), harness.directory.add()
    bought_before = harness.directory.add()
    await order(host, bought_before, datetime.now(UTC) - timedelta(days=1))  # before entry
    for customer in (buys, waits, bought_before):
        await enter(host, bought_event, customer)
    await order(host, buys, datetime.now(UTC))
    loyal, once = harness.directory.add(), harness.directory.add()
    for at in (timedelta(days=30), timedelta(days=2)):
        await order(host, loyal, datetime.now(UTC) - at)
    await order(host, once, datetime.now(UTC) - timedelta(days=2))
    for customer in (loyal, once):
        await enter(host, segment_event, customer)

    async def done() -> None:
        for journey, count in ((bought, 3), (repeat, 2)):
            found = await runs(host, journey.id)
            assert len(found) == count
            assert {r.status for r in found.values()} <= {"completed", "exited"}

    await eventually(done)

    def mailed(customer: str) -> int:
        return len(harness.catcher.to(harness.directory.contacts[customer].email))

    async def delivered() -> None:  # the sender hands queued mails over after the runs
        assert (mailed(waits), mailed(bought_before), mailed(loyal)) == (1, 1, 1)

    await eventually(delivered)
    assert (mailed(buys), mailed(once)) == (0, 0)
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:  # nothing queued for them either
        queued = await uow.session.execute(
            sa.select(sa.func.count())
            .select_from(m.messages)
            .where(m.messages.c.customer_id.in_([uuid.UUID(buys), uuid.UUID(once)]))
        )
        assert queued.scalar_one() == 0


def test_branch_on_consent_still_needs_its_channel() -> None:
    journey = jd.Journey(
        "x", "tenpo.x.v1.Y", (jd.Step("b", jd.Branch(jd.Condition.CONSENTED, channel=None)),)
    )
    with pytest.raises(InvalidArgument):
        jd.validate(journey)
    ok = jd.Journey(
        "x",
        "tenpo.x.v1.Y",
        (jd.Step("b", jd.Branch(jd.Condition.CONSENTED, channel=Channel.SMS)),),
    )
    assert jd.validate(ok) is ok


async def test_an_issue_code_step_needs_a_promotion_id_and_defaults_to_48_hours(
    service: Service, tokens: Tokens
) -> None:
    _, stub = service
    bad = pb.JourneyStep(id="code", issue_code=pb.IssueCodeStep(promotion_id="winter"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(
            stub, tokens, pb.Journey(display_name="x", trigger_event=trigger(), steps=[bad])
        )
    details = decode_error(caught.value)
    assert (caught.value.code(), details.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "JOURNEY_INVALID",
    )
    assert [v.field for v in details.field_violations] == [
        "journey.steps[0].issue_code.promotion_id"
    ]
    promotion = str(uuid.uuid4())
    good = pb.JourneyStep(id="code", issue_code=pb.IssueCodeStep(promotion_id=promotion))
    created = await create(
        stub, tokens, pb.Journey(display_name="x", trigger_event=trigger(), steps=[good])
    )
    step = created.steps[0].issue_code
    assert (step.promotion_id, step.valid_for.ToTimedelta()) == (promotion, timedelta(hours=48))
