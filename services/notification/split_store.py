"""A/B split members and decisions (SQL): who went down which arm, the first message each
was sent after it, and the winner once chosen."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification import models as m
from services.notification.domain import journeys as jd
from services.notification.domain.splits import Decision, VariantCount
from services.notification.store import SENT


class SplitStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def join(
        self, journey_id: uuid.UUID, step_id: str, run_id: uuid.UUID, variant: str
    ) -> None:
        """The run went down ``variant`` (once: a run re-passing the split keeps its arm)."""
        await self.session.execute(
            pg.insert(m.split_members)
            .values(journey_id=journey_id, step_id=step_id, run_id=run_id, variant=variant)
            .on_conflict_do_nothing()
        )

    async def message_sent(self, run_id: uuid.UUID, message_id: uuid.UUID) -> None:
        """The first message a run is sent after a split is the one its arm is judged by."""
        await self.session.execute(
            sa.update(m.split_members)
            .where(m.split_members.c.run_id == run_id, m.split_members.c.message_id.is_(None))
            .values(message_id=message_id)
        )

    async def counts(
        self, journey_id: uuid.UUID, step_id: str, split: jd.Split, metric: jd.Condition
    ) -> list[VariantCount]:
        """Per variant (in the split's order): members whose message was sent, and of them
        those whose message was opened (or clicked)."""
        members, messages = m.split_members, m.messages
        converted_at = (
            messages.c.clicked_at
            if metric is jd.Condition.LAST_MESSAGE_CLICKED
            else messages.c.opened_at
        )
        rows = await self.session.execute(
            sa.select(
                members.c.variant,
                sa.func.count(),
                sa.func.count(converted_at),
            )
            .select_from(members.join(messages, messages.c.id == members.c.message_id))
            .where(
                members.c.journey_id == journey_id,
                members.c.step_id == step_id,
                messages.c.status == SENT,
            )
            .group_by(members.c.variant)
        )
        found = {r[0]: (int(r[1]), int(r[2])) for r in rows.all()}
        return [VariantCount(v.name, *found.get(v.name, (0, 0))) for v in split.variants]

    async def record(
        self, journey_id: uuid.UUID, step_id: str, metric: jd.Condition, decision: Decision
    ) -> None:
        """Kept once: a replica deciding at the same time leaves the first decision."""
        await self.session.execute(
            pg.insert(m.split_decisions)
            .values(
                journey_id=journey_id,
                step_id=step_id,
                winner=decision.winner,
                metric=int(metric),
                results=[
                    {"name": c.name, "sent": c.sent, "converted": c.converted}
                    for c in decision.counts
                ],
                z_score=decision.z_score,
            )
            .on_conflict_do_nothing()
        )

    async def winner(self, journey_id: uuid.UUID, step_id: str) -> str | None:
        row = (
            await self.session.execute(
                sa.select(m.split_decisions.c.winner).where(
                    m.split_decisions.c.journey_id == journey_id,
                    m.split_decisions.c.step_id == step_id,
                )
            )
        ).first()
        return row.winner if row else None

    async def decisions_of(
        self, journey_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[jd.SplitDecision, ...]]:
        if not journey_ids:
            return {}
        rows = await self.session.execute(
            sa.select(m.split_decisions)
            .where(m.split_decisions.c.journey_id.in_(list(journey_ids)))
            .order_by(m.split_decisions.c.decided_at, m.split_decisions.c.step_id)
        )
        out: dict[uuid.UUID, list[jd.SplitDecision]] = {}
        for r in rows.all():
            out.setdefault(r.journey_id, []).append(
                jd.SplitDecision(
                    step_id=r.step_id,
                    winner=r.winner,
                    metric=jd.Condition(r.metric),
                    results=tuple((x["name"], x["sent"], x["converted"]) for x in r.results),
                    z_score=r.z_score,
                    decided_at=r.decided_at,
                )
            )
        return {k: tuple(v) for k, v in out.items()}
