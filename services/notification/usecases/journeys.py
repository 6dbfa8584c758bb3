"""Journey use cases: definitions (create, update, pause, resume), entries by trigger
event, exits by exit event, and the runner that advances due runs. A run's timer is its
``due_at`` row: any replica claims due runs with SKIP LOCKED, so a restart loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.notification.domain import journeys as jd
from services.notification.domain import splits
from services.notification.domain.templates import language_of
from services.notification.products import ProductFinder
from services.notification.promotions import CodeRefused, PromotionIssuer
from services.notification.split_store import SplitStore
from services.notification.store import (
    SKIPPED,
    JourneyStore,
    MessageStore,
    OrderStore,
    RecipientStore,
    Run,
)
from services.notification.tracing import continued_trace, current_trace
from services.notification.usecases.messages import Messages
from services.notification.wakeup import JOURNEYS, notify
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import NotFound, Unavailable
from tenpo.kit.idempotency import idempotent

log = logging.getLogger(__name__)
UPDATABLE = ("display_name", "trigger_event", "steps", "exit_events", "trigger_match")
#: Steps one run may take in one round (send, branch, ...) before it yields.
MAX_STEPS_PER_ROUND = 20
PAUSED_RECHECK = timedelta(seconds=30)
#: An issue-code step whose cart service did not answer is tried again after this, doubled
#: per attempt up to CODE_RETRY_MAX; the run is never given up for it.
CODE_RETRY_FIRST = timedelta(seconds=2)
CODE_RETRY_MAX = timedelta(minutes=5)


def code_retry_delay(attempts: int) -> timedelta:
    return min(CODE_RETRY_FIRST * 2 ** min(attempts, 16), CODE_RETRY_MAX)


def _not_found() -> NotFound:
    return NotFound("no such journey", reason="JOURNEY_NOT_FOUND")


class Journeys:
    def __init__(
        self,
        db: Database,
        messages: Messages,
        promotions: PromotionIssuer | None = None,
        products: ProductFinder | None = None,
    ) -> None:
        self.db = db
        self.messages = messages
        self.promotions = promotions
        self.products = products
        self.due = asyncio.Event()
        #: Set when the cart service failed in this round: the round's other issue-code
        #: steps are rescheduled without waiting out a deadline each.
        self._cart_failed = False

    async def create(
        self, caller: str, journey: jd.Journey, *, request_id: str, request: Message
    ) -> jd.Journey:
        """A new, active journey; a retried request_id answers the same one."""
        jd.validate(journey)
        async with self.db.unit_of_work() as uow:
            store = JourneyStore(uow.session)

            async def create() -> wrappers_pb2.StringValue:
                created = await store.insert(
                    dataclasses.replace(
                        journey, id=uuid.uuid4(), version=1, state=jd.JourneyState.ACTIVE
                    )
                )
                return wrappers_pb2.StringValue(value=str(created.id))

            created_id = await idempotent(
                uow,
                scope=f"CreateJourney:{caller}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=create,
            )
            found = await store.get(uuid.UUID(created_id.value))
            await uow.commit()
        if found is None:
            raise _not_found()
        return found

    async def update(
        self, journey_id: uuid.UUID, changes: jd.Journey, paths: Sequence[str]
    ) -> jd.Journey:
        async with self.db.unit_of_work() as uow:
            store = JourneyStore(uow.session)
            current = await store.get(journey_id, for_update=True)
            if current is None:
                raise _not_found()
            updated = dataclasses.replace(
                current, **{p: getattr(changes, p) for p in paths}, version=current.version + 1
            )
            saved = await store.update(jd.validate(updated))
            await uow.commit()
        return saved

    async def set_state(self, journey_id: uuid.UUID, state: jd.JourneyState) -> jd.Journey:
        async with self.db.unit_of_work() as uow:
            store = JourneyStore(uow.session)
            current = await store.get(journey_id, for_update=True)
            if current is None:
                raise _not_found()
            saved = await store.update(dataclasses.replace(current, state=state))
            await uow.commit()
        return saved

    async def get(self, journey_id: uuid.UUID) -> jd.Journey:
        """The journey with the winners its splits chose."""
        async with self.db.unit_of_work() as uow:
            found = await JourneyStore(uow.session).get(journey_id)
            if found is None:
                raise _not_found()
            decisions = await SplitStore(uow.session).decisions_of([journey_id])
        return dataclasses.replace(found, decisions=decisions.get(journey_id, ()))

    async def list(self, after: tuple[datetime, str] | None, limit: int) -> list[jd.Journey]:
        async with self.db.unit_of_work() as uow:
            found = await JourneyStore(uow.session).list_page(after, limit)
            decisions = await SplitStore(uow.session).decisions_of([j.id for j in found])
        return [dataclasses.replace(j, decisions=decisions.get(j.id, ())) for j in found]

    async def on_event(
        self,
        uow: UnitOfWork,
        event_type: str,
        customer_id: uuid.UUID,
        event_id: str,
        occurred_at: datetime | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """An event of a customer: it may end running journeys and start new ones. ``data``
        (the event's fields) become variables of the started runs' messages, and are what a
        journey's ``trigger_match`` is checked against."""
        store = JourneyStore(uow.session)
        await store.record_exit(customer_id, event_type, occurred_at or datetime.now(UTC))
        for journey in await store.triggered_by(event_type):
            if not journey.matches(data):
                continue
            if await store.start_run(journey, customer_id, event_id, current_trace(), data):
                await notify(uow.session, JOURNEYS)

    async def order_placed(
        self, uow: UnitOfWork, customer_id: uuid.UUID, occurred_at: datetime | None
    ) -> None:
        """The order projection behind segments and "bought since?" (the consumer's inbox
        makes each order count once)."""
        await OrderStore(uow.session).record_order(customer_id, occurred_at or datetime.now(UTC))

    async def customer_erased(self, uow: UnitOfWork, customer_id: uuid.UUID) -> None:
        """An erased customer leaves every journey; what her runs carried, her exit events
        and her order projection go."""
        store = JourneyStore(uow.session)
        await store.end_runs_of(customer_id)
        await store.forget_customer(customer_id)
        await OrderStore(uow.session).erase(customer_id)

    async def advance_due(self, limit: int) -> int:
        self._cart_failed = False
        async with self.db.unit_of_work() as uow:
            store = JourneyStore(uow.session)
            runs = await store.claim_due(limit)
            for run in runs:
                # The trace of the event that started the run goes on through its steps.
                with continued_trace("journey step", run.trace):
                    await self._advance(uow, store, run)
            await uow.commit()
        if runs:
            self.messages.queued.set()
        return len(runs)

    async def _advance(self, uow: UnitOfWork, store: JourneyStore, run: Run) -> None:
        journey = await store.get(run.journey_id)
        if journey is None:
            await store.save_run(run.id, status="exited")
            return
        if journey.state is jd.JourneyState.PAUSED:
            await store.save_run(run.id, due_at=datetime.now(UTC) + PAUSED_RECHECK)
            return
        step_id, last_message_id, waiting = run.step_id, run.last_message_id, run.waiting
        data = dict(run.data)
        for _ in range(MAX_STEPS_PER_ROUND):
            # Exit conditions are re-checked before every step.
            if step_id == jd.EXIT or await store.exited_since(
                run.customer_id, journey.exit_events, run.created_at
            ):
                await store.save_run(
                    run.id,
                    status="exited" if step_id != jd.EXIT else "completed",
                    last_message_id=last_message_id,
                    data=data,
                )
                return
            index = journey.index_of(step_id)
            if index is None:  # the journey was edited and the step is gone
                await store.save_run(run.id, status="exited")
                return
            action = journey.steps[index].action
            if isinstance(action, jd.Wait):
                if not waiting:
                    await store.save_run(
                        run.id,
                        step_id=step_id,
                        waiting=True,
                        waiting_for=int(action.until),
                        last_message_id=last_message_id,
                        data=data,
                        due_at=datetime.now(UTC) + action.duration,
                    )
                    return
                waiting = False
                step_id = journey.after(step_id)
            elif isinstance(action, jd.Send):
                message = await self.messages.compose(
                    uow,
                    customer_id=run.customer_id,
                    template_key=action.template_key,
                    channel=action.channel,
                    data={k: v for k, v in data.items() if k != "variants"},
                    dedupe_key=f"journey:{run.id}:{step_id}",
                    journey_id=journey.id,
                )
                last_message_id = message.id
                if data.get("variants") and message.status != SKIPPED:
                    # The first message after a split is what its arm is judged by.
                    await SplitStore(uow.session).message_sent(run.id, message.id)
                unreachable = message.status == SKIPPED and message.status_reason in (
                    "UNREACHABLE",
                    "NO_CONSENT",
                    "SUPPRESSED",
                )
                step_id = (
                    jd.EXIT
                    if unreachable and action.exit_if_unreachable
                    else journey.after(step_id)
                )
            elif isinstance(action, jd.IssueCode | jd.Recommend):
                try:
                    if isinstance(action, jd.IssueCode):
                        data.update(await self._issue_code(journey, run, step_id, action, data))
                    else:
                        data.update(await self._recommend(uow, run, action, data))
                except Unavailable:
                    # The cart (or catalog, customer) service is away: stay on this step and
                    # try again later; the request id makes a retry answer the same code.
                    await store.save_run(
                        run.id,
                        step_id=step_id,
                        waiting=False,
                        last_message_id=last_message_id,
                        data=data,
                        attempts=run.attempts + 1,
                        due_at=datetime.now(UTC) + code_retry_delay(run.attempts),
                    )
                    return
                except CodeRefused as refused:
                    log.warning(
                        "personal code refused; the run leaves the journey",
                        extra={"run_id": str(run.id), "reason": refused.reason},
                    )
                    await store.save_run(run.id, status="exited", data=data)
                    return
                step_id = journey.after(step_id)
            elif isinstance(action, jd.Split):
                variant = await self._split(uow, journey, step_id, action, run)
                data["variants"] = {**data.get("variants", {}), step_id: variant.name}
                step_id = journey.after(step_id, variant.next_step)
            else:
                holds = await self._holds(uow, action, run, last_message_id)
                step_id = journey.after(step_id, action.if_true if holds else action.if_false)
        await store.save_run(
            run.id,
            step_id=step_id,
            waiting=False,
            last_message_id=last_message_id,
            data=data,
            attempts=0,
            due_at=datetime.now(UTC),
        )

    async def _split(
        self, uow: UnitOfWork, journey: jd.Journey, step_id: str, split: jd.Split, run: Run
    ) -> jd.Variant:
        """The winner once there is one; until then the weighted choice, recorded as a
        member of its arm when the split is to choose a winner."""
        rule = split.winner_rule
        if rule is None:
            return split.choose(journey.id, step_id, run.customer_id)
        store = SplitStore(uow.session)
        winner = await store.winner(journey.id, step_id)
        if winner is None:
            decision = splits.decide(
                rule, await store.counts(journey.id, step_id, split, rule.metric)
            )
            if decision is not None:
                await store.record(journey.id, step_id, rule.metric, decision)
                # Another replica may have decided first: its decision stands.
                winner = await store.winner(journey.id, step_id)
                log.info(
                    "split winner chosen",
                    extra={"journey_id": str(journey.id), "step": step_id, "winner": winner},
                )
        chosen = split.named(winner) if winner else None
        if chosen is not None:
            return chosen
        variant = split.choose(journey.id, step_id, run.customer_id)
        await store.join(journey.id, step_id, run.id, variant.name)
        return variant

    async def _recommend(
        self, uow: UnitOfWork, run: Run, action: jd.Recommend, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Products for the run's later messages, looked up now (so a mail recommends what
        the shop sells when it is sent, not when the journey was defined)."""
        if self.products is None:
            raise Unavailable("no catalog is configured", reason="CATALOG_NOT_CONFIGURED")
        contact = await self.messages.recipients.contact(uow, run.customer_id)
        language = language_of(contact.locale if contact else "")
        shop = self.messages.policy.shop_base_url
        if action.source is jd.Source.VIEWED:
            product = await self.products.viewed(str(run.customer_id), language)
            if product is None:
                # The documented fallback: no product, the code on the promotion's own scope.
                return {"product_title": "", "product_url": "", "product_skus": []}
            return {
                "product_title": product.title,
                "product_url": f"{shop}/products/{product.id}",
                "product_skus": list(product.skus),
            }
        skus = [str(s) for s in data.get("skus", [])]
        found = await self.products.complementary(skus, action.max_products, language)
        return {"products": [{"title": p.title, "url": f"{shop}/products/{p.id}"} for p in found]}

    async def _issue_code(
        self,
        journey: jd.Journey,
        run: Run,
        step_id: str,
        action: jd.IssueCode,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        if self.promotions is None:
            raise Unavailable("no cart service is configured", reason="CART_NOT_CONFIGURED")
        if self._cart_failed:
            raise Unavailable("the cart service failed in this round", reason="CART_UNAVAILABLE")
        try:
            issued = await self.promotions.issue(
                action.promotion_id,
                run.customer_id,
                action.valid_for,
                request_id=f"journey:{run.id}:{step_id}",
                skus=[str(s) for s in data.get("product_skus", [])]
                if action.only_recommended_product
                else [],
            )
        except Unavailable:
            self._cart_failed = True
            raise
        return {"code": issued.code, "code_expire_time": issued.expire_time.isoformat()}

    async def _holds(
        self,
        uow: UnitOfWork,
        branch: jd.Branch,
        run: Run,
        last_message_id: uuid.UUID | None,
    ) -> bool:
        if branch.condition is jd.Condition.CONSENTED:
            assert branch.channel is not None
            return await RecipientStore(uow.session).marketing_consent(
                run.customer_id, branch.channel
            )
        if branch.condition is jd.Condition.BOUGHT_SINCE_ENTRY:
            _, last_order_at = await OrderStore(uow.session).history(run.customer_id)
            return last_order_at is not None and last_order_at >= run.created_at
        if branch.condition is jd.Condition.IN_SEGMENT:
            orders, last_order_at = await OrderStore(uow.session).history(run.customer_id)
            segments = jd.segments_of(orders, last_order_at, datetime.now(UTC))
            return jd.Segment(branch.segment) in segments
        if last_message_id is None:
            return branch.condition is jd.Condition.LAST_MESSAGE_SKIPPED
        message = await MessageStore(uow.session).get(last_message_id)
        if message is None:
            return False
        if branch.condition is jd.Condition.LAST_MESSAGE_SKIPPED:
            return bool(message.status == SKIPPED)
        if branch.condition is jd.Condition.LAST_MESSAGE_OPENED:
            return message.opened_at is not None
        return message.clicked_at is not None

    async def run(self, poll_seconds: float, batch_size: int) -> None:
        while True:
            self.due.clear()
            try:
                handled = await self.advance_due(batch_size)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("journey round failed; retrying")
                handled = 0
                await asyncio.sleep(poll_seconds)
            if handled >= batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.due.wait(), poll_seconds)
