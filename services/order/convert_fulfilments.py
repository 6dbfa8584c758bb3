"""Proto ⇄ domain translation of fulfilments and of orders shown with them."""

from __future__ import annotations

from collections.abc import Iterable

from services.order.convert import order_to
from services.order.domain.fulfilments import (
    FulfillmentLine,
    FulfillmentStatus,
    Fulfilment,
    qr_payload,
)
from services.order.domain.returns import OrderReturn
from services.order.events import money
from services.order.usecases.fulfilments import OrderView
from tenpo.kit.wire import optional_enum, timestamp
from tenpo.order.v1 import resources_pb2 as pb


def view_to(view: OrderView) -> pb.Order:
    message = order_to(view.order)
    message.fulfillments.extend(
        fulfilment_to(
            f,
            view.order.currency,
            owner_view=view.owner_view,
            order_number=view.order.number,
            pickup_code=view.pickup_codes.get(f.id),
        )
        for f in view.fulfilments
    )
    return message


def fulfilment_to(
    f: Fulfilment,
    currency: str,
    *,
    owner_view: bool,
    order_number: str,
    pickup_code: str | None = None,
) -> pb.OrderFulfillment:
    message = pb.OrderFulfillment(
        id=str(f.id),
        number=f.number,
        type=int(f.type),  # type: ignore[arg-type]
        status=int(f.status),  # type: ignore[arg-type]
        location_id=f.location_id,
        store_id=f.store_id,
        lines=[pb.FulfillmentLine(sku=line.sku, quantity=line.quantity) for line in f.lines],
        amount=money(f.amount, currency),
        capture_state=int(f.capture_state),  # type: ignore[arg-type]
        cancel_reason=f.cancel_reason,
        order_id=str(f.order_id),
        order_number=order_number,
    )
    _set_time(message.due_time, f.due_at)
    _set_time(message.update_time, f.updated_at)
    if f.window is not None:
        _set_time(message.promised_window.start_time, f.window[0])
        _set_time(message.promised_window.end_time, f.window[1])
    if f.ready_at is not None:
        _set_time(message.pickup.ready_time, f.ready_at)
        _set_time(message.pickup.hold_until, f.hold_until)
        if owner_view and pickup_code and f.status is FulfillmentStatus.READY_FOR_PICKUP:
            # Only the customer sees the code: staff and store devices verify it.
            message.pickup.pickup_code = pickup_code
            message.pickup.qr_payload = qr_payload(f, pickup_code)
    if f.carrier:
        message.shipment.carrier = f.carrier
        message.shipment.tracking_number = f.tracking_number
        _set_time(message.shipment.ship_time, f.shipped_at)
    return message


def delivery_status(value: int) -> FulfillmentStatus | None:
    return optional_enum(FulfillmentStatus, value, "status")


def _set_time(target: object, value: object) -> None:
    stamp = timestamp(value)  # type: ignore[arg-type]
    if stamp is not None:
        target.CopyFrom(stamp)  # type: ignore[attr-defined]


def missing_lines(lines: Iterable[pb.FulfillmentLine]) -> list[FulfillmentLine]:
    return [FulfillmentLine(line.sku, line.quantity) for line in lines]


def return_to(value: OrderReturn, currency: str) -> pb.OrderReturn:
    message = pb.OrderReturn(
        id=str(value.id),
        order_id=str(value.order_id),
        store_id=value.store_id,
        lines=[pb.FulfillmentLine(sku=line.sku, quantity=line.quantity) for line in value.lines],
        refund=money(value.refund, currency),
        status=int(value.status),  # type: ignore[arg-type]
        return_authorization_id=str(value.authorization_id or ""),
    )
    _set_time(message.create_time, value.created_at)
    return message
