"""Kit layer: the limits a field's contract declares (``tenpo.common.v1.limits``), read by
whoever enforces or documents them.

A field states its bounds once, in its proto (``protos/tenpo/common/v1/limits.proto``):
``max_length``, ``pattern``, ``minimum``/``maximum``, ``max_items`` and the ErrorInfo reason
a refusal carries. The gateway's OpenAPI document states them, the gateway refuses a request
past them with :func:`check` before calling a service, and the services take their bounds
from :func:`declared` instead of their own numbers, so the document, the gateway and the
services cannot disagree.

A proto3 scalar at its default (0, "") is unset, and bounds apply to set values only;
``google.api.field_behavior`` REQUIRED says a value must be set. On a repeated field the
value bounds apply to every item and ``max_items`` to the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from tenpo.common.v1 import limits_pb2
from tenpo.kit.errors import FieldViolation, InvalidArgument

#: The reason of a refusal whose declaration names none.
DEFAULT_REASON = "FIELD_INVALID"
_SIXTY_FOUR_BIT = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


@dataclass(frozen=True)
class Limits:
    """One field's declared limits (None: not declared)."""

    max_length: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_items: int | None = None
    reason: str = DEFAULT_REASON

    def matches(self, text: str) -> bool:
        """The text matches the whole pattern (patterns are anchored: ``^...$``)."""
        return self.pattern is None or _compiled(self.pattern).fullmatch(text) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(pattern)
    return found


def of_field(field: Any) -> Limits | None:
    """The limits ``field`` (a FieldDescriptor) declares, or None."""
    options = field.GetOptions()
    if not options.HasExtension(limits_pb2.limits):
        return None
    raw = options.Extensions[limits_pb2.limits]
    return Limits(
        max_length=raw.max_length or None,
        pattern=raw.pattern or None,
        minimum=raw.minimum if raw.HasField("minimum") else None,
        maximum=raw.maximum if raw.HasField("maximum") else None,
        max_items=raw.max_items or None,
        reason=raw.reason or DEFAULT_REASON,
    )


def declared(message: Any, field_name: str) -> Limits:
    """The limits of ``message``'s field (a message class or descriptor): for services that
    take their bounds from the contract. Raises LookupError when none are declared."""
    descriptor = getattr(message, "DESCRIPTOR", message)
    found = of_field(descriptor.fields_by_name[field_name])
    if found is None:
        raise LookupError(f"{descriptor.full_name}.{field_name} declares no limits")
    return found


def is_sixty_four_bit(field: Any) -> bool:
    """64-bit integers travel as JSON strings: numeric bounds cannot be stated on them."""
    return field.type in _SIXTY_FOUR_BIT


# --- checking a request --------------------------------------------------------------------

_Plan = tuple[tuple[tuple[Any, Limits], ...], tuple[Any, ...]]
_PLANS: dict[str, _Plan | None] = {}


def _plan(descriptor: Any) -> _Plan | None:
    """The limited fields of a message type and the message fields that lead to more; None
    when nothing below it is limited (cached per type)."""
    key = descriptor.full_name
    if key in _PLANS:
        return _PLANS[key]
    _PLANS[key] = None  # a recursive type leads nowhere new through itself
    limited = []
    nested = []
    for field in descriptor.fields:
        found = of_field(field)
        if found is not None:
            limited.append((field, found))
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        message = field.type == FieldDescriptor.TYPE_MESSAGE and not is_map
        if message and _plan(field.message_type) is not None:
            nested.append(field)
    plan = (tuple(limited), tuple(nested)) if limited or nested else None
    _PLANS[key] = plan
    return plan


def check(message: Any, *, json_names: bool = True) -> None:
    """Refuse ``message`` when a set field breaks its declared limits: InvalidArgument with
    the declaration's reason and one field violation naming the field (JSON names as a client
    of the HTTP API writes them, else proto names; ``lines[2].sku``)."""
    violation = _first_violation(message, "", json_names)
    if violation is not None:
        path, description, reason = violation
        raise InvalidArgument(
            f"{path} {description}",
            reason=reason,
            field_violations=[FieldViolation(path, description)],
        )


def _first_violation(message: Any, prefix: str, json_names: bool) -> tuple[str, str, str] | None:
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return None
    limited, nested = plan
    for field, limits in limited:
        path = prefix + (field.json_name if json_names else field.name)
        value = getattr(message, field.name)
        found = _violation(field, limits, value, path)
        if found is not None:
            return found
    for field in nested:
        path = prefix + (field.json_name if json_names else field.name)
        if field.is_repeated:
            for index, item in enumerate(getattr(message, field.name)):
                found = _first_violation(item, f"{path}[{index}].", json_names)
                if found is not None:
                    return found
        elif message.HasField(field.name):
            found = _first_violation(getattr(message, field.name), f"{path}.", json_names)
            if found is not None:
                return found
    return None


def _violation(field: Any, limits: Limits, value: Any, path: str) -> tuple[str, str, str] | None:
    if field.is_repeated:
        if limits.max_items is not None and len(value) > limits.max_items:
            return path, f"has at most {limits.max_items} items", limits.reason
        for index, item in enumerate(value):
            found = _value_violation(limits, item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return _value_violation(limits, value, path)


def _value_violation(limits: Limits, value: Any, path: str) -> tuple[str, str, str] | None:
    if isinstance(value, str):
        if not value:
            return None
        if limits.max_length is not None and len(value) > limits.max_length:
            return path, f"has at most {limits.max_length} characters", limits.reason
        if not limits.matches(value):
            return path, f"must match {limits.pattern}", limits.reason
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        return None
    if limits.minimum is not None and value < limits.minimum:
        return path, f"is at least {limits.minimum}", limits.reason
    if limits.maximum is not None and value > limits.maximum:
        return path, f"is at most {limits.maximum}", limits.reason
    return None
