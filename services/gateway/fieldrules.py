"""Gateway documentation layer: what the contract says about a field beyond its type, for
the OpenAPI schema, read generically from the descriptors.

1. ``google.api.field_behavior`` (AIP-203): ``REQUIRED`` → listed in ``required`` (and a
   required query parameter), ``OUTPUT_ONLY`` → ``readOnly``, ``INPUT_ONLY`` →
   ``writeOnly``, ``IMMUTABLE`` → said in the description.
2. ``google.api.field_info.format`` (AIP-202): ``UUID4`` → ``format: uuid``, ``IPV4`` /
   ``IPV6`` / ``IPV4_OR_IPV6`` → ``ipv4`` / ``ipv6`` / either.
3. A small convention for what the services enforce and the protos do not annotate yet:
   - a string field whose comment says ``(UUID)`` is a UUID (the resources' ids say so);
   - an id field takes the format of the id of the resource it names: ``id``/``ids`` in
     ``<Verb><Resource>Request``, ``<resource>_id(s)`` anywhere, ``parent_id`` and
     ``new_parent_id`` in (a request about) the resource itself; a comment saying
     ``or "me"`` adds that word as an alternative;
   - ``page_size`` is ``0 ≤ page_size ≤ max_page_size`` (0: the default; larger values are
     lowered, AIP-158), ``request_id`` at most ``MAX_REQUEST_ID_LENGTH`` characters.
4. What every service enforces on every field: a REQUIRED string is not empty
   (``minLength: 1``), a REQUIRED repeated field has an item (``minItems: 1``), and no text
   holds a NUL character (PostgreSQL cannot store one; the services refuse it).
5. ``tenpo.common.v1.limits`` (``tenpo.kit.limits``): ``max_length`` → ``maxLength``,
   ``pattern`` → ``pattern`` (in place of the NUL rule, which it implies), ``minimum`` /
   ``maximum`` (not on 64-bit integers, which are JSON strings), ``max_items`` →
   ``maxItems``. The gateway refuses a request past them (``transcode.build_request``) and
   the services take their bounds from the same declaration.
"""

from __future__ import annotations

import re
from typing import Any

from google.api import field_behavior_pb2, field_info_pb2
from google.protobuf.descriptor import FieldDescriptor

from services.gateway.descriptors import Schema
from services.gateway.transcode import is_repeated
from tenpo.kit import limits
from tenpo.kit.idempotency import MAX_REQUEST_ID_LENGTH

_FORMATS = {
    field_info_pb2.FieldInfo.UUID4: "uuid",
    field_info_pb2.FieldInfo.IPV4: "ipv4",
    field_info_pb2.FieldInfo.IPV6: "ipv6",
}
_WORDS = re.compile(r"[A-Z][a-z0-9]*")
_PARENT_IDS = frozenset({"parent_id", "new_parent_id"})
_ALIAS = re.compile(r'\bor "(\w+)"')
#: Any text without a NUL character.
NO_NUL = "^[^\\u0000]*$"


def behaviors(field: Any) -> set[int]:
    """The field's ``google.api.field_behavior`` values (empty when not annotated)."""
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def is_required(field: Any) -> bool:
    return field_behavior_pb2.REQUIRED in behaviors(field)


def _declared_format(field: Any) -> str | None:
    options = field.GetOptions()
    if not options.HasExtension(field_info_pb2.field_info):
        return None
    number = options.Extensions[field_info_pb2.field_info].format
    if number == field_info_pb2.FieldInfo.IPV4_OR_IPV6:
        return "ip"
    return _FORMATS.get(number)


def _singular(word: str) -> list[str]:
    candidates = [word]
    if word.endswith("ies"):
        candidates.append(word[:-3] + "y")
    if word.endswith("es"):
        candidates.append(word[:-2])
    if word.endswith("s"):
        candidates.append(word[:-1])
    return candidates


def _declared_value_limits(field: Any) -> dict[str, Any]:
    """The schema keys of one value of ``field`` from its ``tenpo.common.v1.limits``."""
    declared = limits.of_field(field)
    if declared is None:
        return {}
    extra: dict[str, Any] = {}
    if field.type == FieldDescriptor.TYPE_STRING:
        if declared.max_length is not None:
            extra["maxLength"] = declared.max_length
        if declared.pattern is not None:
            extra["pattern"] = declared.pattern
    elif field.type != FieldDescriptor.TYPE_MESSAGE and not limits.is_sixty_four_bit(field):
        if declared.minimum is not None:
            extra["minimum"] = declared.minimum
        if declared.maximum is not None:
            extra["maximum"] = declared.maximum
    return extra


class FieldRules:
    """Per-field schema additions; results are cached per field."""

    def __init__(self, schema: Schema, *, max_page_size: int) -> None:
        self._schema = schema
        self._max_page_size = max_page_size
        self._formats: dict[str, str | None] = {}

    # --- the resource an id names ---------------------------------------------------------

    def _message(self, package: str, name: str) -> Any:
        for candidate in _singular(name):
            found = self._schema.message(f"{package}.{candidate}")
            if found is not None and "id" in found.fields_by_name:
                return found
        return None

    def _resource_of(self, message: Any) -> Any:
        """The resource a message is (it has an id and is no request) or is about."""
        name: str = message.name
        package = message.full_name.rsplit(".", 1)[0]
        if not name.endswith("Request"):
            return message if "id" in message.fields_by_name else None
        words = _WORDS.findall(name.removesuffix("Request"))
        # GetProduct → Product, BatchGetProducts → Products → Product.
        for start in range(1, len(words)):
            found = self._message(package, "".join(words[start:]))
            if found is not None:
                return found
        return None

    def _named_resource(self, field: Any) -> Any:
        name: str = field.name
        message = field.containing_type
        if name in ("id", "ids"):
            return self._resource_of(message) if message.name.endswith("Request") else None
        if name in _PARENT_IDS:
            return self._resource_of(message)
        stem = name.removesuffix("_ids").removesuffix("_id")
        if stem == name:
            return None
        package = message.full_name.rsplit(".", 1)[0]
        camel = "".join(part.capitalize() for part in stem.split("_"))
        return self._message(package, camel)

    # --- formats ---------------------------------------------------------------------------

    def string_format(self, field: Any) -> str | None:
        """``uuid``, ``ipv4``, ... for string fields the contract or convention types."""
        if field.type != FieldDescriptor.TYPE_STRING:
            return None
        key = field.full_name
        if key not in self._formats:
            self._formats[key] = None  # breaks cycles while resolving
            self._formats[key] = self._resolve_format(field)
        return self._formats[key]

    def _resolve_format(self, field: Any) -> str | None:
        declared = _declared_format(field)
        if declared is not None:
            return declared
        if "(UUID)" in self._schema.comment(f"{field.containing_type.full_name}.{field.name}"):
            return "uuid"
        resource = self._named_resource(field)
        if resource is None:
            return None
        return self.string_format(resource.fields_by_name["id"])

    # --- schema additions ------------------------------------------------------------------

    def value_constraints(self, field: Any) -> dict[str, Any]:
        """Keys to add to the schema of one value of ``field`` (an item, if repeated)."""
        extra: dict[str, Any] = {}
        found = self.string_format(field)
        if found is not None:
            comment = self._schema.comment(f"{field.containing_type.full_name}.{field.name}")
            aliases = _ALIAS.findall(comment)
            formats = [{"format": "ipv4"}, {"format": "ipv6"}] if found == "ip" else []
            if aliases:
                # 'Customer id, or "me".': the id, or that word.
                formats = formats or [{"format": found}]
                extra["anyOf"] = [*formats, *({"const": a} for a in aliases)]
            elif formats:
                extra["anyOf"] = formats
            else:
                extra["format"] = found
        if field.type == FieldDescriptor.TYPE_STRING:
            if found is None:
                extra["pattern"] = NO_NUL
            if is_required(field) and not is_repeated(field):
                extra["minLength"] = 1
        if field.name == "page_size" and field.type != FieldDescriptor.TYPE_STRING:
            extra["minimum"] = 0
            extra["maximum"] = self._max_page_size
        if field.name == "request_id" and field.type == FieldDescriptor.TYPE_STRING:
            extra["maxLength"] = MAX_REQUEST_ID_LENGTH
        extra.update(_declared_value_limits(field))
        return extra

    @staticmethod
    def list_constraints(field: Any) -> dict[str, Any]:
        """minItems (REQUIRED) / maxItems (declared) of a repeated field's array schema."""
        extra: dict[str, Any] = {}
        if not is_repeated(field):
            return extra
        if is_required(field):
            extra["minItems"] = 1
        declared = limits.of_field(field)
        if declared is not None and declared.max_items is not None:
            extra["maxItems"] = declared.max_items
        return extra

    @staticmethod
    def field_annotations(field: Any) -> dict[str, Any]:
        """readOnly / writeOnly from field_behavior, the list's bounds (for the field's own
        schema)."""
        found = behaviors(field)
        extra: dict[str, Any] = FieldRules.list_constraints(field)
        if field_behavior_pb2.OUTPUT_ONLY in found:
            extra["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in found:
            extra["writeOnly"] = True
        return extra

    @staticmethod
    def behavior_note(field: Any) -> str:
        found = behaviors(field)
        notes = []
        if field_behavior_pb2.REQUIRED in found:
            notes.append("Required.")
        if field_behavior_pb2.OUTPUT_ONLY in found:
            notes.append("Output only.")
        if field_behavior_pb2.IMMUTABLE in found:
            notes.append("Immutable once set.")
        return " ".join(notes)
