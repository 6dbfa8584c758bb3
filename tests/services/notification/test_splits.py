"""A/B splits choose their winner automatically: the two-proportion z-test on seeded counts
(pure), and over real PostgreSQL — members recorded with the first message they were sent,
no winner while a sample is short, then the winner recorded once, shown by GetJourney, and
every later entry sent its way."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.notification import models as m
from services.notification.config import NotificationSettings
from services.notification.domain import journeys as jd
from services.notification.domain import splits
from services.notification.domain.splits import VariantCount
from services.notification.split_store import SplitStore
from services.notification.store import SENT
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.server import ServiceHost
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.notification.conftest import Harness, eventually, expect_error, staff

RULE = jd.WinnerRule(jd.Condition.LAST_MESSAGE_OPENED, min_sample=100, confidence=0.95)


def test_the_z_score_is_the_pooled_two_proportion_statistic() -> None:
    # 20 % vs 10 % of 200 each: pooled 15 %, se = sqrt(.15 * .85 * (2 / 200)) = 0.035707.
    z = splits.z_score(VariantCount("a", 200, 40), VariantCount("b", 200, 20))
    assert z == pytest.approx(2.8006, abs=1e-4)
    assert splits.critical_z(0.95) == pytest.approx(1.95996, abs=1e-5)
    assert splits.critical_z(0.99) == pytest.approx(2.57583, abs=1e-5)
    # No variance (nobody, or everybody, converted): nothing tells them apart.
    assert splits.z_score(VariantCount("a", 100, 0), VariantCount("b", 100, 0)) == 0.0


def test_no_winner_while_a_variant_is_short_of_its_sample() -> None:
    counts = [VariantCount("a", 100, 60), VariantCount("b", 99, 5)]
    assert splits.decide(RULE, counts) is None


def test_a_significantly_better_variant_wins() -> None:
    counts = [VariantCount("a", 120, 12), VariantCount("b", 120, 36)]
    decision = splits.decide(RULE, counts)
    assert decision is not None
    assert decision.winner == "b"
    assert decision.z_score == pytest.approx(splits.z_score(counts[1], counts[0]))
    assert decision.counts == tuple(counts)


def test_a_difference_that_is_not_significant_chooses_nothing() -> None:
    # 12 % vs 10 %: z ≈ 0.45.
    assert splits.decide(RULE, [VariantCount("a", 100, 12), VariantCount("b", 100, 10)]) is None
    # The same rates at 99.9 % confidence need more than 20 % vs 10 % of 200.
    strict = jd.WinnerRule(jd.Condition.LAST_MESSAGE_OPENED, 100, 0.999)
    assert splits.decide(strict, [VariantCount("a", 200, 40), VariantCount("b", 200, 20)]) is None


def test_the_best_must_beat_every_other_variant() -> None:
    close_second = [
        VariantCount("a", 100, 30),
        VariantCount("b", 100, 28),
        VariantCount("c", 100, 10),
    ]
    assert splits.decide(RULE, close_second) is None
    clear = [VariantCount("a", 100, 40), VariantCount("b", 100, 15), VariantCount("c", 100, 10)]
    decision = splits.decide(RULE, clear)
    assert decision is not None and decision.winner == "a"
    assert decision.z_score == pytest.approx(splits.z_score(clear[0], clear[1]))


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (jd.WinnerRule(jd.Condition.CONSENTED, 100, 0.95), "metric"),
        (jd.WinnerRule(jd.Condition.LAST_MESSAGE_OPENED, 5, 0.95), "min_sample_per_variant"),
        (jd.WinnerRule(jd.Condition.LAST_MESSAGE_CLICKED, 100, 0.3), "confidence"),
    ],
)
def test_a_bad_winner_rule_is_refused_naming_the_field(rule: jd.WinnerRule, field: str) -> None:
    journey = jd.Journey(
        "AB",
        "tenpo.test.v1.X",
        (
            jd.Step("split", jd.Split((jd.Variant("a"), jd.Variant("b")), rule)),
            jd.Step("mail", jd.Send("welcome", jd.Channel.EMAIL)),
        ),
    )
    with pytest.raises(InvalidArgument) as caught:
        jd.validate(journey)
    assert caught.value.reason == "JOURNEY_INVALID"
    assert caught.value.field_violations[0].field == f"journey.steps[0].split.winner_rule.{field}"


def ab_journey(trigger: str) -> pb.Journey:
    """Variants a and b each get a mail (the same template here); the opened rate decides."""
    return pb.Journey(
        display_name="AB subject test",
        trigger_event=trigger,
        steps=[
            pb.JourneyStep(
                id="split",
                split=pb.SplitStep(
                    variants=[
                        pb.SplitVariant(name="a", weight=1, next_step="mail-a"),
                        pb.SplitVariant(name="b", weight=1, next_step="mail-b"),
                    ],
                    winner_rule=pb.SplitWinnerRule(
                        metric=pb.JOURNEY_CONDITION_LAST_MESSAGE_OPENED,
                        min_sample_per_variant=20,
                        confidence=0.95,
                    ),
                ),
            ),
            pb.JourneyStep(
                id="mail-a",
                send=pb.SendStep(template_key="welcome", channel=pb.MESSAGE_CHANNEL_EMAIL),
            ),
            pb.JourneyStep(
                id="done",
                branch=pb.BranchStep(
                    condition=pb.JOURNEY_CONDITION_LAST_MESSAGE_OPENED,
                    if_true="exit",
                    if_false="exit",
                ),
            ),
            pb.JourneyStep(
                id="mail-b",
                send=pb.SendStep(template_key="welcome", channel=pb.MESSAGE_CHANNEL_EMAIL),
            ),
        ],
    )


async def enter(
    host: ServiceHost[NotificationSettings], trigger: str, customers: list[str]
) -> None:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        for customer in customers:
            await host.runtime.parts["journeys"].on_event(
                uow, trigger, uuid.UUID(customer), str(uuid.uuid4()), None
            )
        await uow.commit()
    host.runtime.parts["journeys"].due.set()


async def members(host: ServiceHost[NotificationSettings], journey_id: str) -> list[Any]:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            sa.select(m.split_members).where(m.split_members.c.journey_id == uuid.UUID(journey_id))
        )
        return list(rows.all())


async def seed_counts(
    host: ServiceHost[NotificationSettings], journey_id: str, counts: dict[str, tuple[int, int]]
) -> None:
    """Members with a sent message each, ``opened`` of them opened."""
    assert host.runtime is not None
    now = datetime.now(UTC)
    async with host.runtime.db.unit_of_work() as uow:
        for variant, (sent, opened) in counts.items():
            for i in range(sent):
                message_id = uuid.uuid4()
                await uow.session.execute(
                    sa.insert(m.messages).values(
                        id=message_id,
                        customer_id=uuid.uuid4(),
                        dedupe_key=f"seeded:{message_id}",
                        template_key="welcome",
                        template_version=1,
                        channel=1,
                        category=1,
                        status=SENT,
                        sent_at=now,
                        opened_at=now if i < opened else None,
                        journey_id=uuid.UUID(journey_id),
                    )
                )
                await uow.session.execute(
                    sa.insert(m.split_members).values(
                        run_id=uuid.uuid4(),
                        step_id="split",
                        journey_id=uuid.UUID(journey_id),
                        variant=variant,
                        message_id=message_id,
                    )
                )
        await uow.commit()


async def test_the_winner_is_chosen_recorded_shown_and_given_to_later_entries(
    harness: Harness, tokens: Tokens
) -> None:
    trigger = f"tenpo.test.v1.AbEntered{uuid.uuid4().hex[:8]}"
    async with harness.start() as (host, stub):
        created = await stub.CreateJourney(
            api.CreateJourneyRequest(journey=ab_journey(trigger), request_id=str(uuid.uuid4())),
            metadata=staff(tokens),
        )
        journey_id = created.journey.id
        rule = created.journey.steps[0].split.winner_rule
        assert (rule.min_sample_per_variant, rule.confidence) == (20, 0.95)

        # Before any sample: recipients are split by weight, each recorded with the first
        # message she was sent after the split.
        first = [harness.directory.add() for _ in range(6)]
        await enter(host, trigger, first)

        async def joined() -> None:
            found = await members(host, journey_id)
            assert len(found) == 6 and all(x.message_id is not None for x in found)

        await eventually(joined)
        assert {x.variant for x in await members(host, journey_id)} <= {"a", "b"}
        got = await stub.GetJourney(api.GetJourneyRequest(id=journey_id), metadata=staff(tokens))
        assert list(got.journey.split_decisions) == []

        # b opens 10 of 25, a 2 of 25: z ≈ 2.6 > 1.96 at 95 %.
        await seed_counts(host, journey_id, {"a": (25, 2), "b": (25, 10)})
        later = [harness.directory.add() for _ in range(8)]
        await enter(host, trigger, later)

        async def all_to_the_winner() -> None:
            assert host.runtime is not None
            async with host.runtime.db.unit_of_work() as uow:
                rows = await uow.session.execute(
                    sa.select(m.journey_runs.c.data, m.journey_runs.c.status).where(
                        m.journey_runs.c.customer_id.in_([uuid.UUID(c) for c in later])
                    )
                )
                found = rows.all()
            assert len(found) == 8
            assert [(r.data.get("variants", {}).get("split"), r.status) for r in found] == [
                ("b", "completed")
            ] * 8

        await eventually(all_to_the_winner)
        got = await stub.GetJourney(api.GetJourneyRequest(id=journey_id), metadata=staff(tokens))
        [decision] = got.journey.split_decisions
        assert (decision.step_id, decision.winner, decision.metric) == (
            "split",
            "b",
            pb.JOURNEY_CONDITION_LAST_MESSAGE_OPENED,
        )
        first_counts = {x.variant for x in await members(host, journey_id)}
        results = {r.name: (r.sent, r.converted) for r in decision.results}
        # The seeded members, plus the first entries whose mails were sent before deciding.
        assert results["a"][0] >= 25 and results["b"][0] >= 25 and first_counts <= {"a", "b"}
        assert results["a"][1] == 2 and results["b"][1] == 10
        assert decision.z_score > 1.96
        assert decision.HasField("decide_time")
        # Later entries are not members: the decided sample stays as it was.
        assert len(await members(host, journey_id)) == 6 + 50
        listed = await stub.ListJourneys(api.ListJourneysRequest(), metadata=staff(tokens))
        [same] = [j for j in listed.journeys if j.id == journey_id]
        assert same.split_decisions[0].winner == "b"


async def test_a_winner_rule_on_an_unusable_metric_is_invalid_argument(
    harness: Harness, tokens: Tokens
) -> None:
    journey = ab_journey("tenpo.test.v1.Bad")
    journey.steps[0].split.winner_rule.metric = pb.JOURNEY_CONDITION_BOUGHT_SINCE_ENTRY
    async with harness.start() as (_, stub):
        await expect_error(
            stub.CreateJourney(api.CreateJourneyRequest(journey=journey), metadata=staff(tokens)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "JOURNEY_INVALID",
        )


async def test_replicas_deciding_at_once_keep_one_winner(harness: Harness, tokens: Tokens) -> None:
    """Two transactions record different winners at the same time (as two replicas could,
    from counts read a moment apart): the first insert stands, and both then read it."""
    trigger = f"tenpo.test.v1.AbRace{uuid.uuid4().hex[:8]}"
    async with harness.start() as (host, stub):
        assert host.runtime is not None
        db = host.runtime.db
        created = await stub.CreateJourney(
            api.CreateJourneyRequest(journey=ab_journey(trigger)), metadata=staff(tokens)
        )
        journey_id = uuid.UUID(created.journey.id)
        inserted = asyncio.Event()

        async def decide(winner: str, first: bool) -> str | None:
            async with db.unit_of_work() as uow:
                store = SplitStore(uow.session)
                if not first:
                    await inserted.wait()  # the other's row is written, not yet committed
                await store.record(
                    journey_id,
                    "split",
                    jd.Condition.LAST_MESSAGE_OPENED,
                    splits.Decision(winner, 3.0, (VariantCount("a", 20, 10),)),
                )
                if first:
                    inserted.set()
                    await asyncio.sleep(0.2)  # hold the row while the other one inserts
                await uow.commit()
            async with db.unit_of_work() as uow:
                return await SplitStore(uow.session).winner(journey_id, "split")

        seen = await asyncio.gather(decide("a", True), decide("b", False))
        assert seen == ["a", "a"]
        got = await stub.GetJourney(
            api.GetJourneyRequest(id=str(journey_id)), metadata=staff(tokens)
        )
        assert [d.winner for d in got.journey.split_decisions] == ["a"]
