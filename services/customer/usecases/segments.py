"""Customer use cases: computed segments (recomputed on order events, by the loyalty sweep
on the accounts it holds, and by a sweep when time alone changes them), their members for
campaigns, and the daily birthday announcement.

Every membership change writes SegmentEntered/SegmentExited to the outbox in the transaction
that stores it. Recomputing one customer takes her segment_reviews row lock first, so two
replicas (or a sweep and an order event) never both announce the same change: the second
sees the first's stored memberships and finds nothing to change.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime

from services.customer import convert
from services.customer.domain import segments as sd
from services.customer.domain import tiers as tier_rules
from services.customer.store.loyalty import LoyaltyStore
from services.customer.store.segments import SegmentStore
from services.customer.usecases.common import Context, UseCase
from services.customer.usecases.loyalty import Loyalty
from tenpo.customer.v1 import events_pb2
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import UnitOfWork

log = logging.getLogger(__name__)

#: Customers one sweep transaction recomputes; the sweep loops until none is due.
SWEEP_BATCH = 100
#: Birthdays one transaction announces.
BIRTHDAY_BATCH = 500
#: ListSegmentMembers needs this scope (staff or services, e.g. a campaign tool).
MEMBERS_SCOPE = "customers:read"


class Segments(UseCase):
    def __init__(
        self,
        context: Context,
        rules: sd.SegmentRules,
        tiers: tier_rules.TierRules,
        loyalty: Loyalty | None = None,
    ) -> None:
        super().__init__(context)
        self.rules = rules
        self.tiers = tiers
        self.known = frozenset(sd.BUILT_IN) | frozenset(rules.custom)
        if loyalty is not None:
            # The loyalty sweep changes tiers by time (the grace ends, old orders leave the
            # window): loyal-by-tier follows in the same transaction.
            loyalty.sweep_steps.append(self._after_loyalty_sweep)

    # --------------------------------------------------------------------------- compute

    async def recompute(self, uow: UnitOfWork, customer_id: uuid.UUID) -> tuple[int, int]:
        """Bring one customer's stored segments to what her facts say now, announcing every
        change. Returns (entered, exited). Runs in the caller's transaction."""
        store = SegmentStore(uow.session)
        now = self.clock()
        if not await store.alive(customer_id):
            return 0, 0  # unknown here, or erased: nothing is computed for her again
        await store.lock(customer_id, now)
        found = await store.facts(customer_id, now)
        if found is None:
            return 0, 0
        facts, tier, erased = found
        if erased:
            # Erased while this waited for her lock: leave nothing about her behind.
            await store.erase(customer_id)
            return 0, 0
        facts = replace(facts, tier_rank=self.tiers.rank(tier) if tier else -1)
        decision = sd.decide(facts, self.rules, now)
        stored = await store.memberships(customer_id)
        entered, exited = sd.diff(frozenset(stored), decision.segments)
        await store.enter(customer_id, entered, now)
        await store.exit(customer_id, exited)
        await store.set_review(customer_id, decision.next_review, now)
        at = convert.timestamp(now)
        for segment in entered:
            uow.add_event(
                events_pb2.SegmentEntered(
                    customer_id=str(customer_id), segment=segment, enter_time=at
                )
            )
        for segment in exited:
            uow.add_event(
                events_pb2.SegmentExited(
                    customer_id=str(customer_id), segment=segment, exit_time=at
                )
            )
        return len(entered), len(exited)

    async def _after_loyalty_sweep(
        self, uow: UnitOfWork, _store: LoyaltyStore, customer_id: uuid.UUID, _now: datetime
    ) -> None:
        await self.recompute(uow, customer_id)

    async def sweep(self) -> int:
        """Recompute every customer whose review time came (lapsed, birthday month, the
        spend window), and give customers with a birthday but no review row one. Returns
        how many memberships changed."""
        changed = 0
        while True:
            async with self.db.unit_of_work() as uow:
                due = await SegmentStore(uow.session).due(self.clock(), SWEEP_BATCH)
                for customer_id in due:
                    entered, exited = await self.recompute(uow, customer_id)
                    changed += entered + exited
                await uow.commit()
            if len(due) < SWEEP_BATCH:
                break
        while True:
            async with self.db.unit_of_work() as uow:
                fresh = await SegmentStore(uow.session).unreviewed_with_birthday(SWEEP_BATCH)
                for customer_id in fresh:
                    entered, exited = await self.recompute(uow, customer_id)
                    changed += entered + exited
                await uow.commit()
            if len(fresh) < SWEEP_BATCH:
                return changed

    async def announce_birthdays(self) -> int:
        """BirthdayReached for everyone whose birthday is today in Tokyo (29 February
        birthdays on 28 February in other years), once per customer and year. Returns how
        many were announced by this call."""
        today = sd.shop_date(self.clock())
        days = sd.birthdays_on(today)
        announced = 0
        while True:
            async with self.db.unit_of_work() as uow:
                ids = await SegmentStore(uow.session).announce_birthdays(
                    days, today.year, self.clock(), BIRTHDAY_BATCH
                )
                for customer_id in ids:
                    uow.add_event(
                        events_pb2.BirthdayReached(customer_id=str(customer_id), year=today.year)
                    )
                await uow.commit()
            announced += len(ids)
            if len(ids) < BIRTHDAY_BATCH:
                return announced

    # ----------------------------------------------------------------------------- reads

    async def members(
        self, principal: Principal, segment: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, datetime]]:
        """A segment's members by customer id, for campaigns: staff and services only."""
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        principal.require_scope(MEMBERS_SCOPE)
        key = sd.check_segment_key(segment, self.known)
        async with self.db.unit_of_work() as uow:
            return await SegmentStore(uow.session).page(key, after, limit)
