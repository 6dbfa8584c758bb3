"""Gateway transcoding layer: HTTP request → request message, response message → JSON.

Follows the ``google.api.http`` rules: path variables bind (nested) fields, ``body: "*"``
maps the whole JSON body onto the request, ``body: "field"`` one field, and every other
field may come from the query string (``?page_size=10&ids=a&ids=b&product.id=x``; field
names in lowerCamelCase or as in the proto). JSON follows protobuf's JSON mapping.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.gateway.routes import Route
from tenpo.kit import limits
from tenpo.kit.errors import FieldViolation, InvalidArgument

#: Deepest JSON nesting accepted in a body. Tenpo's messages nest a few levels; the bound
#: keeps parsing (recursive in json and json_format) far from Python's recursion limit.
MAX_JSON_DEPTH = 32

#: Well-known types whose JSON form is a single string or number, so a query parameter or
#: path variable can carry them.
SCALAR_WELL_KNOWN = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)
_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid request: {field}: {description}",
        reason="REQUEST_INVALID",
        field_violations=[FieldViolation(field, description)],
    )


def is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def is_map(field: Any) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and field.message_type.GetOptions().map_entry
        and is_repeated(field)
    )


def find_field(message: Any, name: str) -> Any:
    """A field by proto name or lowerCamelCase JSON name."""
    field = message.fields_by_name.get(name)
    if field is not None:
        return field
    for candidate in message.fields:
        if candidate.json_name == name:
            return candidate
    return None


def coerce_text(field: Any, text: str, path: str) -> Any:
    """A query/path string as the value to assign to ``field`` (scalars and enums)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind in _INTEGER_TYPES:
        try:
            value = int(text, 10)
        except ValueError:
            raise _invalid(path, "must be an integer") from None
        low, high = _INT_BOUNDS[kind]
        if not low <= value <= high:
            raise _invalid(path, "is out of range")
        return value
    if kind in _FLOAT_TYPES:
        try:
            number = float(text)
        except ValueError:
            raise _invalid(path, "must be a number") from None
        return number
    if kind == FieldDescriptor.TYPE_BOOL:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise _invalid(path, "must be true or false")
    if kind == FieldDescriptor.TYPE_ENUM:
        value_by_name = field.enum_type.values_by_name.get(text)
        if value_by_name is not None:
            return value_by_name.number
        try:
            number = int(text)
        except ValueError:
            raise _invalid(path, "is not a known value") from None
        if number not in field.enum_type.values_by_number:
            raise _invalid(path, "is not a known value")
        return number
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            padded = text + "=" * (-len(text) % 4)
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except ValueError:
            raise _invalid(path, "must be base64") from None
    raise _invalid(path, "cannot be given as text")


def _assign(message: Message, names: list[str], text: str, path: str) -> None:
    """Set ``message.<names...>`` from a string, creating intermediate messages."""
    target = message
    for i, name in enumerate(names):
        field = find_field(target.DESCRIPTOR, name)
        if field is None:
            raise _invalid(path, "unknown field")
        last = i == len(names) - 1
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if is_map(field):
                raise _invalid(path, "maps cannot be set from the query string")
            if field.message_type.full_name in SCALAR_WELL_KNOWN:
                if not last:
                    raise _invalid(path, "unknown field")
                if is_repeated(field):
                    item = getattr(target, field.name).add()
                else:
                    item = getattr(target, field.name)
                try:
                    json_format.Parse(json.dumps(text), item)
                except json_format.ParseError:
                    # Wrappers of numbers accept the number itself.
                    try:
                        json_format.Parse(text, item)
                    except (json_format.ParseError, ValueError):
                        raise _invalid(path, "has an invalid value") from None
                return
            if last or is_repeated(field):
                raise _invalid(path, "is a message; set its fields (a.b=...)")
            target = getattr(target, field.name)
            continue
        if not last:
            raise _invalid(path, "unknown field")
        value = coerce_text(field, text, path)
        if is_repeated(field):
            getattr(target, field.name).append(value)
        else:
            setattr(target, field.name, value)
        return


def _field_names_set(route: Route) -> set[str]:
    bound = {v.field_path[0] for v in route.variables}
    if route.binding.body and route.binding.body != "*":
        bound.add(route.binding.body)
    return bound


def build_request(
    route: Route,
    path_values: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: bytes | None,
    max_page_size: int,
) -> Message:
    """The request message of ``route`` from the HTTP parts. Raises InvalidArgument."""
    message = route.method.request_class()()
    body_rule = route.binding.body
    _refuse_nul(path_values.values(), query, body)
    if body_rule:
        _parse_body(message, body_rule, body)
    if query:
        reserved = route.extra.get("reserved")
        if reserved is None:
            reserved = route.extra["reserved"] = _field_names_set(route)
        for key, value in query:
            if body_rule == "*":
                raise _invalid(key, "this route takes every field in the body")
            names = key.split(".")
            first = find_field(message.DESCRIPTOR, names[0])
            if first is not None and first.name in reserved:  # type: ignore[operator]
                raise _invalid(key, "is bound by the path or body")
            _assign(message, names, value, key)
    for variable in route.variables:
        _assign(
            message,
            list(variable.field_path),
            path_values[variable.name],
            variable.name,
        )
    clamp_page_size(message, max_page_size)
    limits.check(message)  # what the contract declares (tenpo.common.v1.limits), 400 past it
    return message


def _refuse_nul(
    path_values: Iterable[str], query: Iterable[tuple[str, str]], body: bytes | None
) -> None:
    """NUL is never meaningful in text, and PostgreSQL cannot store it: refuse it here rather
    than let it fail deep inside a service."""
    if any("\x00" in v for v in path_values) or any("\x00" in k or "\x00" in v for k, v in query):
        raise _invalid("request", "must not contain NUL characters")
    if body and b"\\u0000" in body:
        raise _invalid("body", "must not contain NUL characters")


def clamp_page_size(message: Message, max_page_size: int) -> None:
    """Bound ``page_size`` (AIP-158 lets a server return fewer results than asked for)."""
    field = message.DESCRIPTOR.fields_by_name.get("page_size")
    if field is None or field.type not in _INTEGER_TYPES or is_repeated(field):
        return
    if getattr(message, "page_size") > max_page_size:  # noqa: B009 - dynamic message
        message.page_size = max_page_size  # type: ignore[attr-defined]


def parse_json_body(body: bytes, message: Message) -> None:
    """A whole JSON body onto ``message``, read as every ``body: "*"`` route reads it (depth
    bound, a JSON object, enum values the proto defines, declared limits; errors are 400s
    naming the field). For handlers outside the router, e.g. the signed webhooks, so no route
    parses on its own."""
    _parse_body(message, "*", body)
    limits.check(message)


def _parse_body(message: Message, body_rule: str, body: bytes | None) -> None:
    if not body:
        return
    check_json_depth(body, MAX_JSON_DEPTH)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid("body", "is not valid JSON") from None
    if body_rule == "*":
        if not isinstance(document, dict):
            raise _invalid("body", "must be a JSON object")
        _parse_dict(document, message, "")
        return
    field = find_field(message.DESCRIPTOR, body_rule)
    if field is None:
        raise _invalid(body_rule, "unknown body field")
    if field.type == FieldDescriptor.TYPE_MESSAGE and not is_repeated(field):
        if field.message_type.full_name not in SCALAR_WELL_KNOWN and not isinstance(document, dict):
            raise _invalid(field.json_name, "must be a JSON object")
        if field.message_type.full_name in SCALAR_WELL_KNOWN:
            _parse_dict({field.json_name: document}, message, "")
        else:
            _parse_dict(document, getattr(message, field.name), f"{field.json_name}.")
        return
    _parse_dict({field.json_name: document}, message, "")


#: JSON strings, skipped when counting brackets (a "[" inside a string is not nesting).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def check_json_depth(body: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before parsing it: json.loads recurses
    per level, and ~1,000 levels end in RecursionError. Linear in the body (whose size is
    already bounded); bodies with fewer brackets than the bound are not scanned at all."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = 0
    for found in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if found.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise InvalidArgument(
                    f"invalid request: body: nested deeper than {max_depth} levels",
                    reason="BODY_TOO_DEEP",
                    field_violations=[
                        FieldViolation("body", f"nested deeper than {max_depth} levels")
                    ],
                    metadata={"max_depth": str(max_depth)},
                )
        else:
            depth -= 1


def _parse_dict(document: Any, message: Message, prefix: str) -> None:
    """``document`` into ``message``; errors name the offending field (``prefix`` is the path
    of ``message`` in the body, ``""`` for the body itself)."""
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as error:
        text = str(error)
        if _NO_SUCH_FIELD.search(text.split("\n", 1)[0]) is not None:
            # protobuf's text names the internal message type and lists all its fields.
            raise _invalid(_parse_error_field(text, prefix), UNKNOWN_FIELD) from None
        raise _invalid(_parse_error_field(text, prefix), _short(text)) from None
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError):
        raise _invalid(prefix.rstrip(".") or "body", "has an invalid value") from None
    unknown = (
        _unknown_enum(message, prefix.rstrip(".")) if _reaches_enum(message.DESCRIPTOR) else None
    )
    if unknown is not None:
        raise _invalid(unknown, "is not a known value")


UNKNOWN_FIELD = "is not a field of this request"
_NO_SUCH_FIELD = re.compile(r'no field named "([^"]+)" at "([^"]+)"')
_AT_PATH = re.compile(r" at ([A-Za-z_][\w.\[\]]*?)\.?$")
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")


def _parse_error_field(text: str, prefix: str) -> str:
    """The field a json_format.ParseError is about, as the client named it."""
    first_line = text.split("\n", 1)[0]
    path = ""
    found = _NO_SUCH_FIELD.search(first_line)
    if found is not None:
        # 'at "Request.lines[1]"': drop the message type that starts the path.
        parent = found.group(2).partition(".")[2]
        path = f"{parent}.{found.group(1)}" if parent else found.group(1)
    elif (at := _AT_PATH.search(first_line)) is not None and "." in at.group(1):
        path = at.group(1).partition(".")[2]
    else:
        path = ".".join(_FAILED_FIELD.findall(first_line))
    return f"{prefix}{path}" if path else prefix.rstrip(".") or "body"


@functools.cache
def _reaches_enum(descriptor: Any) -> bool:
    """Whether a message or any message inside it has an enum field (most bodies: no walk)."""
    seen = {descriptor.full_name}
    pending = [descriptor]
    while pending:
        for field in pending.pop().fields:
            if field.type == FieldDescriptor.TYPE_ENUM:
                return True
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                inner = field.message_type
                if inner.full_name not in seen:
                    seen.add(inner.full_name)
                    pending.append(inner)
    return False


def _unknown_enum(message: Message, path: str) -> str | None:
    """The path of the first enum field holding a number its enum does not define.

    Proto3 enums are open, so json_format keeps ``{"sort": 999}`` as 999; the services'
    code expects the values it knows. Refused here, field named, before any backend call."""
    for field, value in message.ListFields():
        name = f"{path}.{field.json_name}" if path else field.json_name
        found = _unknown_in_field(field, value, name)
        if found is not None:
            return found
    return None


def _unknown_in_field(field: Any, value: Any, name: str) -> str | None:
    if is_map(field):
        items = [(f"{name}[{key}]", item) for key, item in value.items()]
        field = field.message_type.fields_by_name["value"]
    elif is_repeated(field):
        items = [(f"{name}[{index}]", item) for index, item in enumerate(value)]
    else:
        items = [(name, value)]
    for where, item in items:
        if field.type == FieldDescriptor.TYPE_ENUM:
            if item not in field.enum_type.values_by_number:
                return where
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            found = _unknown_enum(item, where)
            if found is not None:
                return found
    return None


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."


def render(route: Route, response: Message) -> bytes:
    """The JSON body of a response (``response_body`` picks one field)."""
    return to_json(response_payload(route.binding.response_body, response))


def response_payload(response_body: str, response: Message) -> Any:
    if response_body:
        field = response.DESCRIPTOR.fields_by_name[response_body]
        value = getattr(response, response_body)
        if field.type == FieldDescriptor.TYPE_MESSAGE and not is_repeated(field):
            return json_format.MessageToDict(value)
        wrapper = json_format.MessageToDict(response)
        return wrapper.get(field.json_name, [] if is_repeated(field) else None)
    return json_format.MessageToDict(response)


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
