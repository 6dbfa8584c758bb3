"""Proto ⇄ domain translation of orders."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.json_format import ParseDict

from services.order.domain.orders import Order, OrderStatus, PaymentMethod
from services.order.events import money
from tenpo.common.v1 import common_pb2
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.wire import timestamp
from tenpo.order.v1 import resources_pb2 as pb


def payment_method(value: int) -> PaymentMethod | None:
    if value == 0:
        return None
    try:
        return PaymentMethod(value)
    except ValueError:
        raise InvalidArgument(
            "unknown payment method",
            reason="PAYMENT_METHOD_INVALID",
            field_violations=[FieldViolation("payment.method", "CARD, PAY_AT_STORE or KONBINI")],
        ) from None


def statuses(values: list[int]) -> list[OrderStatus]:
    try:
        return [OrderStatus(v) for v in dict.fromkeys(values)]
    except ValueError:
        raise InvalidArgument(
            "unknown order status",
            reason="STATUS_INVALID",
            field_violations=[FieldViolation("statuses", "a known OrderStatus")],
        ) from None


def order_to(order: Order) -> pb.Order:
    currency = order.currency
    message = pb.Order(
        id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        cart_id=order.cart_id,
        status=int(order.status),  # type: ignore[arg-type]
        failure_reason=order.failure_reason,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=order.store_id or "",
        lines=[
            pb.OrderLine(
                sku=line.sku,
                product_id=line.product_id,
                title=line.title,
                quantity=line.quantity,
                unit_price=money(line.unit_price, currency),
                discount=money(line.discount, currency),
                total=money(line.total, currency),
                location_id=line.location_id,
            )
            for line in order.lines
        ],
        totals=pb.OrderTotals(
            subtotal=money(order.totals.subtotal, currency),
            discount=money(order.totals.discount, currency),
            shipping=money(order.totals.shipping, currency),
            total=money(order.totals.total, currency),
            loyalty_points=order.totals.loyalty_points,
            amount_due=money(order.totals.amount_due, currency),
        ),
        payment_method=int(order.payment_method),  # type: ignore[arg-type]
        payment_state=int(order.payment_state),  # type: ignore[arg-type]
        contact_email=order.contact_email or "",
        contact_phone=order.contact_phone or "",
    )
    if order.fulfillment is not None:
        message.fulfillment.method = int(order.fulfillment.method)  # type: ignore[assignment]
        message.fulfillment.store_id = order.fulfillment.store_id or ""
        if order.fulfillment.address:
            ParseDict(
                order.fulfillment.address,
                message.fulfillment.address,
                ignore_unknown_fields=True,
            )
    number = order.refs.get("konbini_number")
    if number:
        message.konbini.payment_number = number
        deadline = timestamp(datetime.fromisoformat(order.refs["konbini_deadline"]))
        if deadline is not None:
            message.konbini.deadline.CopyFrom(deadline)
    created, updated = timestamp(order.created_at), timestamp(order.updated_at)
    if created is not None:
        message.create_time.CopyFrom(created)
    if updated is not None:
        message.update_time.CopyFrom(updated)
    return message


__all__ = ["common_pb2", "order_to", "payment_method", "statuses"]
