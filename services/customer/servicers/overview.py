"""The customer 360 (CustomerService.GetCustomer360) as protobuf: translation only."""

from __future__ import annotations

from google.type import money_pb2

from services.customer import convert
from services.customer.domain import earning as ed
from services.customer.servicers.store_card import card_message
from services.customer.usecases.overview import Overview
from tenpo.customer.v1 import customer_service_pb2 as api


def _yen(units: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="JPY", units=units)


def order_summary(order: ed.OrderRecord, earning: ed.Earning | None) -> api.CustomerOrderSummary:
    return api.CustomerOrderSummary(
        order_id=order.order_id,
        order_number=order.order_number,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=order.store_id or "",
        total=_yen(order.total_yen),
        returned=_yen(order.returned_yen),
        cancelled=order.cancelled,
        place_time=convert.timestamp(order.placed_at),
        points=earning.open_points if earning else 0,
        points_pending=earning is not None and earning.state is ed.EarningState.PENDING,
    )


def overview_response(overview: Overview) -> api.GetCustomer360Response:
    return api.GetCustomer360Response(
        customer=convert.customer(overview.customer),
        consents=[convert.consent_state(s) for s in overview.consents],
        loyalty=convert.loyalty_balance(overview.account),
        store_card=card_message(overview.card),
        recent_interactions=[convert.interaction(i) for i in overview.interactions],
        recent_orders=[order_summary(o, e) for o, e in overview.orders],
        segments=[
            api.SegmentMembership(
                segment=key,
                customer_id=str(overview.customer.id),
                enter_time=convert.timestamp(entered_at),
            )
            for key, entered_at in sorted(overview.segments.items())
        ],
    )
