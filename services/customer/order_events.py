"""The order service's events as customer reads them: proto ⇄ facts (like a servicer, no
rules). ``ReturnReceived`` is not in the order contract yet: it is read by field name from
the generated class once the order package has it, and until then from the provisional
message below (its own descriptor pool, never the generated one, so the real message
replaces it without a clash). What customer needs of it, by name: ``return_id``,
``order_id``, ``customer_id``, and ``refund`` (google.type.Money, what the return refunds)
or else ``lines`` with ``quantity`` (the proportion is then by units)."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.type import money_pb2

from services.customer.domain import earning as ed
from tenpo.kit.events import Event
from tenpo.kit.wire import parse_id
from tenpo.order.v1 import events_pb2 as order_events

RETURN_RECEIVED = "tenpo.order.v1.ReturnReceived"


def _customer(value: str) -> uuid.UUID:
    return parse_id(value, "customer_id")


def _when(event: Event) -> datetime:
    return event.occurred_at or datetime.now(UTC)


def order_placed(event: Event) -> ed.OrderFacts | None:
    """None for a guest order (no customer to earn)."""
    message = event.parse(order_events.OrderPlaced)
    if not message.customer_id:
        return None
    return ed.OrderFacts(
        order_id=ed.check_order_id(message.order_id, "order_id"),
        order_number=message.order_number[: ed.MAX_ID],
        customer_id=_customer(message.customer_id),
        channel=int(message.channel),
        store_id=message.store_id[: ed.MAX_ID] or None,
        total_yen=ed.order_yen(
            message.total.currency_code, message.total.units, message.total.nanos, "total"
        ),
        units=sum(max(line.quantity, 0) for line in message.lines),
        placed_at=_when(event),
    )


def order_cancelled(event: Event) -> str:
    return ed.check_order_id(event.parse(order_events.OrderCancelled).order_id, "order_id")


def return_received(event: Event) -> ed.ReturnFacts | None:
    message = event.parse(return_received_type())
    customer_id: str = getattr(message, "customer_id", "")
    if not customer_id:
        return None
    refund: int | None = None
    fields = message.DESCRIPTOR.fields_by_name
    if "refund" in fields and message.HasField("refund"):
        money: Any = message.refund  # type: ignore[attr-defined]
        refund = ed.order_yen(money.currency_code, money.units, money.nanos, "refund")
    units = sum(max(line.quantity, 0) for line in getattr(message, "lines", []))
    return ed.ReturnFacts(
        return_id=ed.check_order_id(message.return_id, "return_id"),  # type: ignore[attr-defined]
        order_id=ed.check_order_id(message.order_id, "order_id"),  # type: ignore[attr-defined]
        customer_id=_customer(customer_id),
        refund_yen=refund,
        units=units,
        received_at=_when(event),
    )


def return_received_type() -> type[Message]:
    """The generated ReturnReceived once the order contract has it, else the provisional."""
    generated = getattr(order_events, "ReturnReceived", None)
    return generated if generated is not None else _provisional_return_received()


@functools.cache
def _provisional_return_received() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    money_file = descriptor_pb2.FileDescriptorProto()
    money_pb2.DESCRIPTOR.CopyToProto(money_file)
    pool.Add(money_file)
    file = descriptor_pb2.FileDescriptorProto(
        name="tenpo/customer/provisional/return_received.proto",
        package="tenpo.order.v1",
        dependency=[money_file.name],
        syntax="proto3",
    )
    line = file.message_type.add(name="ProvisionalReturnLine")
    _field(line, "sku", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    _field(line, "quantity", 2, descriptor_pb2.FieldDescriptorProto.TYPE_INT32)
    message = file.message_type.add(name="ReturnReceived")
    _field(message, "return_id", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    _field(message, "order_id", 2, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    _field(message, "customer_id", 3, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    _field(message, "store_id", 4, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    _field(
        message,
        "lines",
        5,
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        ".tenpo.order.v1.ProvisionalReturnLine",
        repeated=True,
    )
    _field(
        message, "refund", 6, descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, ".google.type.Money"
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(RETURN_RECEIVED))


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    type_name: str = "",
    *,
    repeated: bool = False,
) -> None:
    label = (
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        if repeated
        else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    )
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
