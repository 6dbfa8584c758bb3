"""Customer use cases: points from orders (pending through the return window, reversed by
returns and cancellations) and tiers from the twelve-month spend.

The handlers run inside the event consumer's transaction (the handled event id commits with
their writes: at-least-once delivery, one effect) and are idempotent on their own as well:
an order earns once per order id, a return reverses once per return id. Lock order as
everywhere in loyalty: the customer row, then the account, then the order's rows.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.customer.domain import campaigns as cd
from services.customer.domain import earning as ed
from services.customer.domain import loyalty as ld
from services.customer.domain import tiers as tier_rules
from services.customer.store.customers import CustomerStore
from services.customer.store.loyalty import LoyaltyStore
from services.customer.store.orders import OrderStore
from services.customer.usecases.campaigns import Campaigns
from services.customer.usecases.common import Context, UseCase
from services.customer.usecases.loyalty import Loyalty
from tenpo.kit.db import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarningPolicy:
    return_window: timedelta
    tiers: tier_rules.TierRules


class Earning(UseCase):
    def __init__(
        self,
        context: Context,
        loyalty: Loyalty,
        policy: EarningPolicy,
        campaigns: Campaigns | None = None,
    ) -> None:
        super().__init__(context)
        self.points = loyalty
        self.earning = policy
        self.campaigns = campaigns
        loyalty.sweep_steps.append(self._sweep_step)

    # --------------------------------------------------------------------------- events

    async def order_placed(self, uow: UnitOfWork, facts: ed.OrderFacts) -> None:
        store = await self._account_of(uow, facts.customer_id)
        if store is None:
            return
        orders = OrderStore(uow.session)
        previous, last_order_at = await orders.history(facts.customer_id)
        if not await orders.record_order(facts):
            return  # the order is known: it earned already
        account = await store.lock(facts.customer_id)
        now = self.clock()
        # The tier the customer had when she ordered multiplies; this order counts for the
        # next one. Campaigns add to what the rules give.
        points = self.points.loyalty.rules.points_for(facts.total_yen, account.tier)
        bonus = 0
        if self.campaigns is not None and points > 0:
            bonus = await self.campaigns.bonus(
                uow,
                order_id=facts.order_id,
                customer_id=facts.customer_id,
                channel=facts.channel,
                placed_at=facts.placed_at,
                base_points=points,
                shopper=cd.Shopper(self.earning.tiers.rank(account.tier), previous, last_order_at),
            )
        points += bonus
        if points > 0:
            await orders.insert_earning(
                ed.Earning(
                    order_id=facts.order_id,
                    customer_id=facts.customer_id,
                    state=ed.EarningState.PENDING,
                    points=points,
                    bonus_points=bonus,
                    reversed=0,
                    channel=facts.channel,
                    store_id=facts.store_id,
                    tier=account.tier,
                    available_at=facts.placed_at + self.earning.return_window,
                    created_at=now,
                )
            )
            self.points.announce(uow, await orders.change_pending(facts.customer_id, points, now))
        await self._retier(uow, facts.customer_id, now)

    async def order_cancelled(self, uow: UnitOfWork, order_id: str) -> None:
        """Everything the order still earns goes; a cancelled order is no spend."""
        orders = OrderStore(uow.session)
        order = await self._order(uow, order_id)
        if order is None or order.cancelled:
            return
        store = LoyaltyStore(uow.session)
        await store.lock(order.customer_id)
        await orders.cancel(order_id)
        if self.campaigns is not None:
            await self.campaigns.give_back(uow, replace(order, cancelled=True))
        earning = await orders.earning(order_id)
        if earning is not None and earning.open_points > 0:
            await self._take_back(uow, earning, earning.open_points, f"cancelled {order_id}")
            if earning.state is ed.EarningState.PENDING:
                await orders.update_earning(order_id, state=ed.EarningState.CANCELLED)
        await self._retier(uow, order.customer_id, self.clock())

    async def return_received(self, uow: UnitOfWork, facts: ed.ReturnFacts) -> None:
        """Points of the order are reversed in proportion to what the return refunds (or,
        without an amount, to the units returned), pending or already available."""
        orders = OrderStore(uow.session)
        order = await self._order(uow, facts.order_id)
        if order is None or order.customer_id != facts.customer_id:
            log.info("return of an order not known here ignored", extra={"order": facts.order_id})
            return
        store = LoyaltyStore(uow.session)
        await store.lock(order.customer_id)
        refund = facts.refund_yen
        if refund is None:
            # By units: the refund's yen share of the order, for the spend.
            refund = order.total_yen * facts.units // order.units if order.units else 0
        if not await orders.record_return(facts, refund):
            return  # this return was handled before
        order = await orders.add_returned(order.order_id, refund, facts.units)
        if self.campaigns is not None:
            await self.campaigns.give_back(uow, order)
        earning = await orders.earning(order.order_id)
        if earning is not None and earning.state is not ed.EarningState.CANCELLED:
            points = ed.reversal_for(earning, order)
            if points > 0:
                await self._take_back(uow, earning, points, f"return {facts.return_id}")
                await orders.set_return_points(facts.return_id, points)
        await self._retier(uow, order.customer_id, self.clock())

    # ---------------------------------------------------------------------------- sweep

    async def _sweep_step(
        self, uow: UnitOfWork, store: LoyaltyStore, customer_id: uuid.UUID, now: datetime
    ) -> None:
        """On an account the sweep holds: earnings past their window become available, and
        a tier whose review time came is recomputed."""
        orders = OrderStore(uow.session)
        for earning in await orders.due_earnings(customer_id, now):
            open_points = earning.open_points
            entry_id: uuid.UUID | None = None
            if open_points > 0:
                entry = replace(
                    self.points.new_entry(
                        customer_id,
                        ld.LedgerEntryKind.EARN,
                        open_points,
                        ld.Origin(earning.channel, earning.store_id),
                        f"order:{earning.order_id}",
                        earning.order_id,
                        now,
                    ),
                    expires_at=now + self.points.loyalty.rules.points_ttl,
                )
                # The pending points leave with the same change that adds them to the
                # balance, so the total shown never jumps.
                await orders.change_pending(customer_id, -open_points, now)
                await self.points.append_entry(uow, store, entry, remaining=open_points)
                entry_id = entry.id
            await orders.update_earning(
                earning.order_id,
                state=ed.EarningState.AVAILABLE,
                entry_id=entry_id,
                entry_points=open_points,
            )
        review_at = await store.tier_review_at(customer_id)
        if review_at is not None and review_at <= now:
            await self._retier(uow, customer_id, now)

    # -------------------------------------------------------------------------- helpers

    async def _account_of(self, uow: UnitOfWork, customer_id: uuid.UUID) -> LoyaltyStore | None:
        """The customer row locked (first, as every loyalty change does); None for an
        unknown or erased customer, whose orders earn nothing here."""
        customer = await CustomerStore(uow.session).get(customer_id, for_update=True)
        if customer is None or customer.is_erased:
            return None
        return LoyaltyStore(uow.session)

    async def _order(self, uow: UnitOfWork, order_id: str) -> ed.OrderRecord | None:
        """The projected order, its customer row locked first (the lock order)."""
        orders = OrderStore(uow.session)
        peek = await orders.order_unlocked(order_id)
        if peek is None or await self._account_of(uow, peek.customer_id) is None:
            return None
        return await orders.order(order_id)

    async def _take_back(
        self, uow: UnitOfWork, earning: ed.Earning, points: int, reference: str
    ) -> None:
        """Reverse ``points`` of an order's earning: from the pending points while its
        window is open, else a REVERSE entry against its EARN entry."""
        orders = OrderStore(uow.session)
        now = self.clock()
        await orders.update_earning(earning.order_id, reversed=earning.reversed + points)
        if earning.state is ed.EarningState.PENDING:
            account = await orders.change_pending(earning.customer_id, -points, now)
            self.points.announce(uow, account)
            return
        if earning.entry_id is None:
            return  # it became available with nothing left: nothing is in the ledger
        store = LoyaltyStore(uow.session)
        lot = await store.entry(earning.customer_id, earning.entry_id)
        entry = self.points.new_entry(
            earning.customer_id,
            ld.LedgerEntryKind.REVERSE,
            -points,
            ld.Origin(earning.channel, earning.store_id),
            "",
            reference,
            now,
        )
        await self.points.take_back(
            uow, store, entry, earning.entry_id, min(points, lot.remaining if lot else 0)
        )

    async def _retier(self, uow: UnitOfWork, customer_id: uuid.UUID, now: datetime) -> None:
        """Recompute the twelve-month spend and the tier (the account is locked)."""
        store = LoyaltyStore(uow.session)
        account = await store.lock(customer_id)
        spend, oldest = await OrderStore(uow.session).spend_since(
            customer_id, now - tier_rules.SPEND_WINDOW
        )
        tier, keep_until = self.earning.tiers.decide(
            account.tier, account.tier_keep_until, spend, now
        )
        # Time alone changes the tier when the oldest counted order leaves the window or
        # the grace period ends: the sweep looks again then.
        moments = [m for m in (keep_until, oldest and oldest + tier_rules.SPEND_WINDOW) if m]
        review_at = min(moments) if moments else None
        orders = OrderStore(uow.session)
        if (tier, keep_until, spend) == (
            account.tier,
            account.tier_keep_until,
            account.twelve_month_spend,
        ):
            await orders.set_review(customer_id, review_at)
            return
        changed = await orders.set_tier(
            customer_id, tier=tier, keep_until=keep_until, review_at=review_at, spend=spend, now=now
        )
        self.points.announce(uow, changed)
