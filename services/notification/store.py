"""Notification persistence: rows ⇄ domain objects over a unit of work's session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification import models as m
from services.notification.domain import journeys as jd
from services.notification.domain.templates import CapPolicy, Category, Channel, Template

MARKETING = 1  # tenpo.customer.v1.CONSENT_PURPOSE_MARKETING
GRANTED = 3  # tenpo.customer.v1.CONSENT_STATUS_GRANTED
#: Message statuses (tenpo.notification.v1.MessageStatus).
QUEUED, DEFERRED, SENT, SKIPPED, FAILED = 1, 2, 3, 4, 5


def _template(row: Any) -> Template:
    return Template(
        id=row.id,
        key=row.key,
        channel=Channel(row.channel),
        language=row.language,
        version=row.version,
        category=Category(row.category),
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        segment_budget=row.segment_budget,
        cap_policy=CapPolicy(row.cap_policy),
        sample_data=dict(row.sample_data),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _template_values(t: Template) -> dict[str, Any]:
    return {
        "id": t.id,
        "key": t.key,
        "channel": int(t.channel),
        "language": t.language,
        "version": t.version,
        "category": int(t.category),
        "subject": t.subject,
        "text_body": t.text_body,
        "html_body": t.html_body,
        "segment_budget": t.segment_budget,
        "cap_policy": int(t.cap_policy),
        "sample_data": t.sample_data,
    }


class TemplateStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, t: Template) -> Template | None:
        """None when the key, channel and language exist already."""
        row = (
            await self.session.execute(
                pg.insert(m.templates)
                .values(_template_values(t))
                .on_conflict_do_nothing()
                .returning(m.templates)
            )
        ).first()
        if row is None:
            return None
        await self._keep_version(t)
        return _template(row)

    async def update(self, t: Template) -> Template:
        row = (
            await self.session.execute(
                sa.update(m.templates)
                .where(m.templates.c.id == t.id)
                .values({**_template_values(t), "updated_at": sa.func.now()})
                .returning(m.templates)
            )
        ).one()
        await self._keep_version(t)
        return _template(row)

    async def _keep_version(self, t: Template) -> None:
        body = _template_values(t) | {"id": str(t.id)}
        await self.session.execute(
            pg.insert(m.template_versions).values(template_id=t.id, version=t.version, body=body)
        )

    async def get(self, template_id: uuid.UUID, *, for_update: bool = False) -> Template | None:
        query = sa.select(m.templates).where(m.templates.c.id == template_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _template(row) if row else None

    async def find(self, key: str, channel: Channel, language: str) -> Template | None:
        """The template in ``language``, else in the other one."""
        rows = (
            await self.session.execute(
                sa.select(m.templates).where(
                    m.templates.c.key == key, m.templates.c.channel == int(channel)
                )
            )
        ).all()
        chosen = sorted(rows, key=lambda r: r.language != language)
        return _template(chosen[0]) if chosen else None

    async def list_page(
        self, key: str, after: tuple[str, int, str] | None, limit: int
    ) -> list[Template]:
        query = sa.select(m.templates)
        if key:
            query = query.where(m.templates.c.key == key)
        order = (m.templates.c.key, m.templates.c.channel, m.templates.c.language)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(*(sa.literal(v) for v in after)))
        rows = (await self.session.execute(query.order_by(*order).limit(limit))).all()
        return [_template(r) for r in rows]

    async def delete(self, template_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            sa.delete(m.templates).where(m.templates.c.id == template_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ContactRow:
    customer_id: uuid.UUID
    email: str
    phone: str
    locale: str
    time_zone: str
    given_name: str = ""


class RecipientStore:
    """Contacts, the consent projection and suppressions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def contact(self, customer_id: uuid.UUID) -> ContactRow | None:
        row = (
            await self.session.execute(
                sa.select(m.contacts).where(m.contacts.c.customer_id == customer_id)
            )
        ).first()
        if row is None:
            return None
        return ContactRow(
            row.customer_id, row.email, row.phone, row.locale, row.time_zone, row.given_name
        )

    async def save_contact(self, c: ContactRow) -> None:
        values = {
            "customer_id": c.customer_id,
            "email": c.email,
            "phone": c.phone,
            "locale": c.locale,
            "time_zone": c.time_zone,
            "given_name": c.given_name,
        }
        await self.session.execute(
            pg.insert(m.contacts)
            .values(values)
            .on_conflict_do_update(
                index_elements=[m.contacts.c.customer_id],
                set_={**values, "fetched_at": sa.func.now()},
            )
        )

    async def forget_contact(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.delete(m.contacts).where(m.contacts.c.customer_id == customer_id)
        )

    async def set_consent(
        self, customer_id: uuid.UUID, purpose: int, channel: int, status: int, at: datetime
    ) -> None:
        """Keep the newest state: an older event arriving late changes nothing."""
        values = {
            "customer_id": customer_id,
            "purpose": purpose,
            "channel": channel,
            "status": status,
            "changed_at": at,
        }
        await self.session.execute(
            pg.insert(m.consents)
            .values(values)
            .on_conflict_do_update(
                index_elements=[
                    m.consents.c.customer_id,
                    m.consents.c.purpose,
                    m.consents.c.channel,
                ],
                set_={"status": status, "changed_at": at},
                where=m.consents.c.changed_at <= at,
            )
        )

    async def marketing_consent(self, customer_id: uuid.UUID, channel: Channel) -> bool:
        status = (
            await self.session.execute(
                sa.select(m.consents.c.status).where(
                    m.consents.c.customer_id == customer_id,
                    m.consents.c.purpose == MARKETING,
                    m.consents.c.channel == int(channel),  # ConsentChannel numbers match
                )
            )
        ).scalar()
        return status == GRANTED

    async def suppression(self, channel: Channel, address: str) -> tuple[bool, bool]:
        """(suppressed, marketing_only)."""
        row = (
            await self.session.execute(
                sa.select(m.suppressions.c.marketing_only).where(
                    m.suppressions.c.channel == int(channel),
                    m.suppressions.c.address == address.lower(),
                )
            )
        ).first()
        return (row is not None, bool(row and row.marketing_only))

    async def suppress(
        self, channel: Channel, address: str, reason: str, marketing_only: bool
    ) -> Any:
        values = {
            "channel": int(channel),
            "address": address.lower(),
            "reason": reason,
            "marketing_only": marketing_only,
        }
        return (
            await self.session.execute(
                pg.insert(m.suppressions)
                .values(values)
                .on_conflict_do_update(
                    index_elements=[m.suppressions.c.channel, m.suppressions.c.address],
                    set_={"reason": reason, "marketing_only": marketing_only},
                )
                .returning(m.suppressions)
            )
        ).one()

    async def unsuppress(self, channel: Channel, address: str) -> bool:
        result = await self.session.execute(
            sa.delete(m.suppressions).where(
                m.suppressions.c.channel == int(channel),
                m.suppressions.c.address == address.lower(),
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def list_suppressions(self, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
        query = sa.select(m.suppressions)
        if after is not None:
            query = query.where(
                sa.tuple_(m.suppressions.c.created_at, m.suppressions.c.address)
                < sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
        order = (m.suppressions.c.created_at.desc(), m.suppressions.c.address.desc())
        return list((await self.session.execute(query.order_by(*order).limit(limit))).all())


class MessageStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> Any | None:
        """The new row; None when the dedupe key already produced this template's message."""
        return (
            await self.session.execute(
                pg.insert(m.messages).values(values).on_conflict_do_nothing().returning(m.messages)
            )
        ).first()

    async def by_dedupe(self, dedupe_key: str, template_key: str, channel: Channel) -> Any:
        return (
            await self.session.execute(
                sa.select(m.messages).where(
                    m.messages.c.dedupe_key == dedupe_key,
                    m.messages.c.template_key == template_key,
                    m.messages.c.channel == int(channel),
                )
            )
        ).one()

    async def by_provider_id(self, channel: Channel, provider_id: str) -> Any | None:
        """The message a provider knows by ``provider_id``, locked for the report."""
        return (
            await self.session.execute(
                sa.select(m.messages)
                .where(
                    m.messages.c.channel == int(channel), m.messages.c.provider_id == provider_id
                )
                .order_by(m.messages.c.created_at.desc())
                .limit(1)
                .with_for_update()
            )
        ).first()

    async def get(self, message_id: uuid.UUID, *, for_update: bool = False) -> Any | None:
        query = sa.select(m.messages).where(m.messages.c.id == message_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).first()

    async def marketing_since(self, customer_id: uuid.UUID, since: datetime) -> int:
        """Marketing messages sent or waiting to be sent in a local day starting ``since``."""
        until = since + timedelta(days=1)
        return int(
            (
                await self.session.execute(
                    sa.select(sa.func.count()).where(
                        m.messages.c.customer_id == customer_id,
                        m.messages.c.category == int(Category.MARKETING),
                        m.messages.c.status.in_([QUEUED, DEFERRED, SENT]),
                        m.messages.c.scheduled_at >= since,
                        m.messages.c.scheduled_at < until,
                    )
                )
            ).scalar_one()
        )

    async def claim_due(self, limit: int) -> list[Any]:
        """Due messages, locked for this transaction; other senders skip them."""
        query = (
            sa.select(m.messages)
            .where(
                m.messages.c.status.in_([QUEUED, DEFERRED]),
                m.messages.c.scheduled_at <= sa.func.now(),
            )
            .order_by(m.messages.c.scheduled_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(query)).all())

    async def update(self, message_id: uuid.UUID, **values: Any) -> Any:
        return (
            await self.session.execute(
                sa.update(m.messages)
                .where(m.messages.c.id == message_id)
                .values(**values)
                .returning(m.messages)
            )
        ).one()

    async def add_links(self, message_id: uuid.UUID, links: list[str]) -> None:
        if links:
            await self.session.execute(
                sa.insert(m.message_links),
                [{"message_id": message_id, "index": i, "url": u} for i, u in enumerate(links)],
            )

    async def link(self, message_id: uuid.UUID, index: int) -> str | None:
        return (
            await self.session.execute(
                sa.select(m.message_links.c.url).where(
                    m.message_links.c.message_id == message_id,
                    m.message_links.c.index == index,
                )
            )
        ).scalar()

    async def mark_first(self, message_id: uuid.UUID, column: str) -> Any | None:
        """Set ``opened_at``/``clicked_at`` if unset; the row when this was the first."""
        col = m.messages.c[column]
        return (
            await self.session.execute(
                sa.update(m.messages)
                .where(m.messages.c.id == message_id, col.is_(None))
                .values({column: sa.func.now()})
                .returning(m.messages)
            )
        ).first()

    async def list_page(
        self, customer_id: uuid.UUID | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Any]:
        query = sa.select(m.messages)
        if customer_id is not None:
            query = query.where(m.messages.c.customer_id == customer_id)
        if after is not None:
            query = query.where(
                sa.tuple_(m.messages.c.created_at, m.messages.c.id)
                < sa.tuple_(sa.literal(after[0]), sa.literal(uuid.UUID(after[1])))
            )
        order = (m.messages.c.created_at.desc(), m.messages.c.id.desc())
        return list((await self.session.execute(query.order_by(*order).limit(limit))).all())

    async def erase_customer(self, customer_id: uuid.UUID) -> None:
        """Bodies and addresses go; the ids and statuses stay for the statistics."""
        await self.session.execute(
            sa.update(m.messages)
            .where(m.messages.c.customer_id == customer_id)
            .values(to_address="", subject="", text_body="", html_body="", data={})
        )


def _journey(row: Any) -> jd.Journey:
    return jd.Journey(
        id=row.id,
        display_name=row.display_name,
        trigger_event=row.trigger_event,
        steps=tuple(step_from_json(s) for s in row.steps),
        exit_events=tuple(row.exit_events),
        trigger_match=dict(row.trigger_match),
        state=jd.JourneyState(row.state),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def step_to_json(step: jd.Step) -> dict[str, Any]:
    a = step.action
    if isinstance(a, jd.Send):
        return {
            "id": step.id,
            "send": {
                "template": a.template_key,
                "channel": int(a.channel),
                "exit": a.exit_if_unreachable,
            },
        }
    if isinstance(a, jd.Wait):
        return {
            "id": step.id,
            "wait": {"seconds": a.duration.total_seconds(), "until": int(a.until)},
        }
    if isinstance(a, jd.IssueCode):
        return {
            "id": step.id,
            "issue_code": {
                "promotion_id": a.promotion_id,
                "seconds": a.valid_for.total_seconds(),
                "only_recommended": a.only_recommended_product,
            },
        }
    if isinstance(a, jd.Recommend):
        return {"id": step.id, "recommend": {"source": int(a.source), "max": a.max_products}}
    if isinstance(a, jd.Split):
        variants = [{"name": v.name, "weight": v.weight, "next": v.next_step} for v in a.variants]
        rule = a.winner_rule
        if rule is None:
            return {"id": step.id, "split": variants}
        return {
            "id": step.id,
            "split": variants,
            "winner_rule": {
                "metric": int(rule.metric),
                "min_sample": rule.min_sample,
                "confidence": rule.confidence,
            },
        }
    return {
        "id": step.id,
        "branch": {
            "condition": int(a.condition),
            "if_true": a.if_true,
            "if_false": a.if_false,
            "channel": int(a.channel) if a.channel else 0,
            "segment": a.segment,
        },
    }


def step_from_json(raw: dict[str, Any]) -> jd.Step:
    if "send" in raw:
        s = raw["send"]
        return jd.Step(raw["id"], jd.Send(s["template"], Channel(s["channel"]), s["exit"]))
    if "wait" in raw:
        w = raw["wait"]
        return jd.Step(
            raw["id"], jd.Wait(timedelta(seconds=w["seconds"]), jd.Condition(w["until"]))
        )
    if "issue_code" in raw:
        c = raw["issue_code"]
        return jd.Step(
            raw["id"],
            jd.IssueCode(
                c["promotion_id"],
                timedelta(seconds=c["seconds"]),
                c.get("only_recommended", False),
            ),
        )
    if "recommend" in raw:
        r = raw["recommend"]
        return jd.Step(raw["id"], jd.Recommend(jd.Source(r["source"]), r["max"]))
    if "split" in raw:
        rule = raw.get("winner_rule")
        return jd.Step(
            raw["id"],
            jd.Split(
                tuple(jd.Variant(v["name"], v["weight"], v["next"]) for v in raw["split"]),
                jd.WinnerRule(jd.Condition(rule["metric"]), rule["min_sample"], rule["confidence"])
                if rule
                else None,
            ),
        )
    b = raw["branch"]
    return jd.Step(
        raw["id"],
        jd.Branch(
            jd.Condition(b["condition"]),
            b["if_true"],
            b["if_false"],
            Channel(b["channel"]) if b["channel"] else None,
            b.get("segment", ""),
        ),
    )


def _journey_values(j: jd.Journey) -> dict[str, Any]:
    return {
        "id": j.id,
        "display_name": j.display_name,
        "trigger_event": j.trigger_event,
        "steps": [step_to_json(s) for s in j.steps],
        "exit_events": list(j.exit_events),
        "trigger_match": dict(j.trigger_match),
        "state": int(j.state),
        "version": j.version,
    }


@dataclass(frozen=True)
class Run:
    id: uuid.UUID
    journey_id: uuid.UUID
    customer_id: uuid.UUID
    trigger_event_id: str
    step_id: str
    waiting: bool
    waiting_for: int
    last_message_id: uuid.UUID | None
    created_at: datetime
    trace: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


class JourneyStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, j: jd.Journey) -> jd.Journey:
        row = (
            await self.session.execute(
                sa.insert(m.journeys).values(_journey_values(j)).returning(m.journeys)
            )
        ).one()
        return _journey(row)

    async def update(self, j: jd.Journey) -> jd.Journey:
        row = (
            await self.session.execute(
                sa.update(m.journeys)
                .where(m.journeys.c.id == j.id)
                .values({**_journey_values(j), "updated_at": sa.func.now()})
                .returning(m.journeys)
            )
        ).one()
        return _journey(row)

    async def get(self, journey_id: uuid.UUID, *, for_update: bool = False) -> jd.Journey | None:
        query = sa.select(m.journeys).where(m.journeys.c.id == journey_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _journey(row) if row else None

    async def list_page(self, after: tuple[datetime, str] | None, limit: int) -> list[jd.Journey]:
        query = sa.select(m.journeys)
        if after is not None:
            query = query.where(
                sa.tuple_(m.journeys.c.created_at, m.journeys.c.id)
                > sa.tuple_(sa.literal(after[0]), sa.literal(uuid.UUID(after[1])))
            )
        rows = await self.session.execute(
            query.order_by(m.journeys.c.created_at, m.journeys.c.id).limit(limit)
        )
        return [_journey(r) for r in rows.all()]

    async def triggered_by(self, event_type: str) -> list[jd.Journey]:
        rows = await self.session.execute(
            sa.select(m.journeys).where(
                m.journeys.c.trigger_event == event_type,
                m.journeys.c.state == int(jd.JourneyState.ACTIVE),
            )
        )
        return [_journey(r) for r in rows.all()]

    async def start_run(
        self,
        journey: jd.Journey,
        customer_id: uuid.UUID,
        trigger_event_id: str,
        trace: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """False when this event already started this journey (dedupe)."""
        row = (
            await self.session.execute(
                pg.insert(m.journey_runs)
                .values(
                    id=uuid.uuid4(),
                    journey_id=journey.id,
                    customer_id=customer_id,
                    trigger_event_id=trigger_event_id,
                    step_id=journey.steps[0].id,
                    status="active",
                    due_at=sa.func.now(),
                    trace=trace,
                    data=data or {},
                )
                .on_conflict_do_nothing()
                .returning(m.journey_runs.c.id)
            )
        ).first()
        return row is not None

    async def claim_due(self, limit: int) -> list[Run]:
        """Due runs, locked for this transaction: any replica may look, each run is
        advanced by one."""
        rows = await self.session.execute(
            sa.select(m.journey_runs)
            .where(m.journey_runs.c.status == "active", m.journey_runs.c.due_at <= sa.func.now())
            .order_by(m.journey_runs.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [
            Run(
                r.id,
                r.journey_id,
                r.customer_id,
                r.trigger_event_id,
                r.step_id,
                r.waiting,
                r.waiting_for,
                r.last_message_id,
                r.created_at,
                dict(r.trace),
                dict(r.data),
                r.attempts,
            )
            for r in rows.all()
        ]

    async def save_run(self, run_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            sa.update(m.journey_runs)
            .where(m.journey_runs.c.id == run_id)
            .values(**values, updated_at=sa.func.now())
        )

    async def wake_waiting(self, message_id: uuid.UUID, condition: int) -> None:
        """Runs waiting for ``condition`` on this message are due now."""
        await self.session.execute(
            sa.update(m.journey_runs)
            .where(
                m.journey_runs.c.last_message_id == message_id,
                m.journey_runs.c.status == "active",
                m.journey_runs.c.waiting.is_(True),
                m.journey_runs.c.waiting_for == condition,
            )
            .values(due_at=sa.func.now())
        )

    async def end_runs_of(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.update(m.journey_runs)
            .where(m.journey_runs.c.customer_id == customer_id, m.journey_runs.c.status == "active")
            .values(status="exited", updated_at=sa.func.now())
        )

    async def forget_customer(self, customer_id: uuid.UUID) -> None:
        """Erasure: what her runs carried (codes, SKUs she looked at) and when she did what
        (the exit events) go; the runs' ids, statuses and A/B variants stay for the journeys'
        statistics."""
        data = m.journey_runs.c.data
        await self.session.execute(
            sa.update(m.journey_runs)
            .where(m.journey_runs.c.customer_id == customer_id)
            .values(
                data=sa.func.jsonb_strip_nulls(
                    sa.func.jsonb_build_object("variants", data["variants"])
                ),
                updated_at=sa.func.now(),
            )
        )
        await self.session.execute(
            sa.delete(m.journey_exits).where(m.journey_exits.c.customer_id == customer_id)
        )

    async def record_exit(self, customer_id: uuid.UUID, event_type: str, at: datetime) -> None:
        await self.session.execute(
            pg.insert(m.journey_exits)
            .values(customer_id=customer_id, event_type=event_type, occurred_at=at)
            .on_conflict_do_update(
                index_elements=[m.journey_exits.c.customer_id, m.journey_exits.c.event_type],
                set_={"occurred_at": sa.func.greatest(m.journey_exits.c.occurred_at, at)},
            )
        )

    async def exited_since(
        self, customer_id: uuid.UUID, event_types: tuple[str, ...], since: datetime
    ) -> bool:
        if not event_types:
            return False
        row = (
            await self.session.execute(
                sa.select(m.journey_exits.c.event_type).where(
                    m.journey_exits.c.customer_id == customer_id,
                    m.journey_exits.c.event_type.in_(event_types),
                    m.journey_exits.c.occurred_at >= since,
                )
            )
        ).first()
        return row is not None


class OrderStore:
    """The order projection: how many orders a customer placed, first and last."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_order(self, customer_id: uuid.UUID, at: datetime) -> None:
        table = m.customer_orders
        await self.session.execute(
            pg.insert(table)
            .values(customer_id=customer_id, orders=1, first_order_at=at, last_order_at=at)
            .on_conflict_do_update(
                index_elements=[table.c.customer_id],
                set_={
                    "orders": table.c.orders + 1,
                    "first_order_at": sa.func.least(table.c.first_order_at, at),
                    "last_order_at": sa.func.greatest(table.c.last_order_at, at),
                },
            )
        )

    async def history(self, customer_id: uuid.UUID) -> tuple[int, datetime | None]:
        row = (
            await self.session.execute(
                sa.select(m.customer_orders.c.orders, m.customer_orders.c.last_order_at).where(
                    m.customer_orders.c.customer_id == customer_id
                )
            )
        ).first()
        return (row.orders, row.last_order_at) if row else (0, None)

    async def erase(self, customer_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.delete(m.customer_orders).where(m.customer_orders.c.customer_id == customer_id)
        )
