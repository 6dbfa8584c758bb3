"""Customer use cases: the 360 view for customer-service staff (one read of everything this
service holds about a customer, for one screen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import earning as ed
from services.customer.domain import loyalty as ld
from services.customer.domain import store_card as sd
from services.customer.domain import timeline as td
from services.customer.store.consents import ConsentStore
from services.customer.store.loyalty import LoyaltyStore
from services.customer.store.orders import OrderStore
from services.customer.store.segments import SegmentStore
from services.customer.store.store_card import StoreCardStore
from services.customer.store.timeline import TimelineStore
from services.customer.usecases.common import UseCase, load_customer
from tenpo.kit.auth import Principal, PrincipalKind

OVERVIEW_SCOPE = "customers:overview"
MAX_RECENT = 100


@dataclass(frozen=True)
class Overview:
    customer: d.Customer
    consents: list[d.ConsentState]
    account: ld.Account
    card: sd.Card
    interactions: list[td.Interaction]
    orders: list[tuple[ed.OrderRecord, ed.Earning | None]]
    #: Segment key → when she entered it.
    segments: dict[str, datetime]


class Overviews(UseCase):
    async def get(self, principal: Principal, customer_ref: str, recent: int) -> Overview:
        # Staff only: the customer herself reads the same data through the other calls.
        principal.require_any_kind(PrincipalKind.STAFF)
        principal.require_scope(OVERVIEW_SCOPE)
        if customer_ref.strip() in ("", "me"):
            raise d.invalid("customer_id", "the customer's id", "CUSTOMER_ID_REQUIRED")
        customer_id = convert.parse_id(customer_ref.strip(), "customer_id")
        if recent < 0:
            raise d.invalid("recent_limit", "must not be negative", "INVALID_RECENT_LIMIT")
        limit = min(recent or 20, MAX_RECENT)
        async with self.db.unit_of_work() as uow:
            customer = await load_customer(uow, customer_id, principal)
            consents = d.current_consents(await ConsentStore(uow.session).all_of(customer_id))
            account = await LoyaltyStore(uow.session).get(customer_id)
            card = await StoreCardStore(uow.session).get(customer_id)
            interactions = await TimelineStore(uow.session).page(customer_id, None, limit)
            orders = OrderStore(uow.session)
            recent_orders = await orders.recent(customer_id, limit)
            earnings = await orders.earnings_of([o.order_id for o in recent_orders])
            segments = await SegmentStore(uow.session).memberships(customer_id)
        return Overview(
            customer=customer,
            consents=sorted(consents, key=lambda s: (int(s.purpose), int(s.channel))),
            account=account or ld.empty_account(customer_id),
            card=card or sd.empty_card(customer_id),
            interactions=interactions,
            orders=[(o, earnings.get(o.order_id)) for o in recent_orders],
            segments=segments,
        )
