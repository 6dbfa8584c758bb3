"""Gateway documentation layer: an OpenAPI 3.1 document generated from the descriptors.

Paths and operations come from the routes, parameters from path variables and the request
fields left for the query string, schemas from messages and enums (JSON mapping: field names
in lowerCamelCase, 64-bit integers as strings, enums by name, well-known types in their JSON
forms), descriptions from the proto comments. Errors are documented once, in the AIP-193
shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

from services.gateway.descriptors import Schema
from services.gateway.fieldrules import FieldRules, is_required
from services.gateway.routes import Route
from services.gateway.transcode import SCALAR_WELL_KNOWN, is_map, is_repeated

ERROR_SCHEMA = "Error"
ERROR_RESPONSES = {
    "400": "The request is invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE).",
    "401": "No valid credentials (UNAUTHENTICATED): a bearer token or publishable key is needed.",
    "403": "The caller may not do this (PERMISSION_DENIED).",
    "404": "Not found (NOT_FOUND), or no such route.",
    "409": "Conflict (ALREADY_EXISTS, ABORTED: stale etag).",
    "413": "The request body is too large.",
    "429": "Rate limited (RESOURCE_EXHAUSTED); see the Retry-After header.",
    "500": "Internal error; the message carries an id to quote.",
    "503": "A backend is unavailable; retry with backoff.",
    "504": "A backend did not answer in time.",
}
_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_WELL_KNOWN_SCHEMAS: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$",
        "description": "Seconds with up to nine fractional digits and an 's' suffix, e.g. '900s'.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase, e.g. 'title,brand'.",
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int32", "minimum": 0},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}
_VARIABLE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")
#: Query parameters are offered down to this depth of nested messages (a.b.c).
MAX_QUERY_DEPTH = 3


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class OpenApiBuilder:
    def __init__(
        self, schema: Schema, *, title: str, version: str, max_page_size: int = 100
    ) -> None:
        self._schema = schema
        self._rules = FieldRules(schema, max_page_size=max_page_size)
        self._title = title
        self._version = version
        self._components: dict[str, Any] = {}
        self._pending: list[Any] = []
        #: Update bodies (schema dict, resource) whose $ref may need the update variant.
        self._update_bodies: list[tuple[dict[str, Any], str]] = []
        #: Success responses of routes that answer something other than their JSON message
        #: (the tracking pixel's GIF, the click's 302), by method full name.
        self._success: dict[str, dict[str, Any]] = {}

    # --- schemas -------------------------------------------------------------------------

    def _message_ref(self, message: Any) -> dict[str, Any]:
        known = _WELL_KNOWN_SCHEMAS.get(message.full_name)
        if known is not None:
            return dict(known)
        if message.full_name not in self._components:
            self._components[message.full_name] = None  # placeholder: breaks recursion
            self._pending.append(message)
        return _ref(message.full_name)

    def _enum_ref(self, enum: Any) -> dict[str, Any]:
        if enum.full_name not in self._components:
            self._components[enum.full_name] = None
            self._pending.append(enum)
        return _ref(enum.full_name)

    def _value_schema(self, field: Any) -> dict[str, Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self._message_ref(field.message_type)
        if kind == FieldDescriptor.TYPE_ENUM:
            return self._enum_ref(field.enum_type)
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number", "format": "double" if kind == 1 else "float"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]{1,19}$"}
        if kind in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": r"^[0-9]{1,20}$"}
        return {}

    def _constrained_value(self, field: Any) -> dict[str, Any]:
        """One value of ``field`` with the limits the contract states (see fieldrules)."""
        schema = self._value_schema(field)
        if "$ref" in schema:
            return schema
        return {**schema, **self._rules.value_constraints(field)}

    def _field_schema(self, field: Any) -> dict[str, Any]:
        if is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self._value_schema(value_field),
            }
        elif is_repeated(field):
            schema = {"type": "array", "items": self._constrained_value(field)}
        else:
            schema = self._constrained_value(field)
        schema.update(self._rules.field_annotations(field))
        description = self._schema.comment(f"{field.containing_type.full_name}.{field.name}")
        note = self._rules.behavior_note(field)
        if note and note not in description:
            description = f"{description} {note}".strip()
        if description:
            if "$ref" in schema:
                # 3.1 allows siblings of $ref; keep them for tools that show descriptions.
                schema = {**schema, "description": description}
            else:
                schema["description"] = description
        return schema

    def _build_message(self, message: Any) -> dict[str, Any]:
        properties = {f.json_name: self._field_schema(f) for f in message.fields}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        required = [f.json_name for f in message.fields if is_required(f)]
        if required:
            schema["required"] = required
        description = self._schema.comment(message.full_name)
        if description:
            schema["description"] = description
        return schema

    def _build_enum(self, enum: Any) -> dict[str, Any]:
        names = [v.name for v in enum.values]
        lines = (
            [self._schema.comment(enum.full_name)] if self._schema.comment(enum.full_name) else []
        )
        for value in enum.values:
            comment = self._schema.comment(f"{enum.full_name}.{value.name}")
            if comment:
                lines.append(f"- `{value.name}`: {comment}")
        schema: dict[str, Any] = {"type": "string", "enum": names}
        if lines:
            schema["description"] = "\n".join(lines)
        return schema

    def _flush(self) -> None:
        while self._pending:
            item = self._pending.pop()
            if isinstance(item, EnumDescriptor):
                self._components[item.full_name] = self._build_enum(item)
            else:
                self._components[item.full_name] = self._build_message(item)

    # --- parameters ----------------------------------------------------------------------

    def query_parameters(
        self, message: Any, prefix: str, skip: set[str], depth: int, seen: set[str]
    ) -> Iterable[dict[str, Any]]:
        for field in message.fields:
            if not prefix and field.name in skip:
                continue
            name = f"{prefix}{field.json_name}"
            description = self._schema.comment(f"{message.full_name}.{field.name}")
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                full = field.message_type.full_name
                if is_map(field):
                    continue
                if full in SCALAR_WELL_KNOWN:
                    item = dict(_WELL_KNOWN_SCHEMAS[full])
                elif is_repeated(field) or depth >= MAX_QUERY_DEPTH or full in seen:
                    continue
                else:
                    yield from self.query_parameters(
                        field.message_type, f"{name}.", skip, depth + 1, seen | {full}
                    )
                    continue
            else:
                item = self._constrained_value(field)
            if is_repeated(field):
                schema = {"type": "array", "items": item, **self._rules.list_constraints(field)}
            else:
                schema = item
            parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
            if not prefix and is_required(field):
                parameter["required"] = True
            if is_repeated(field):
                parameter["style"] = "form"
                parameter["explode"] = True
            if description:
                parameter["description"] = description
            yield parameter

    # --- document ------------------------------------------------------------------------

    def build(
        self,
        routes: Iterable[Route],
        extra_paths: dict[str, dict[str, Any]] | None = None,
        success_responses: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``success_responses``: by method full name, the success responses of a route the
        gateway answers itself in another shape (they replace the JSON 200)."""
        self._success = success_responses or {}
        paths: dict[str, dict[str, Any]] = {}
        #: OpenAPI treats /a/{x} and /a/{y} as the same path: the first route to claim a
        #: shape names its parameters, later ones reuse those names.
        names_by_shape: dict[str, list[str]] = {}
        used_ids: set[str] = set()
        tags: dict[str, str] = {}
        for route in sorted(routes, key=lambda r: (r.template, r.verb)):
            method = route.method
            shape = _VARIABLE.sub("{}", route.template)
            names = names_by_shape.setdefault(shape, _parameter_names(route))
            path = shape
            for name in names:
                path = path.replace("{}", "{" + name + "}", 1)
            parameters: list[dict[str, Any]] = []
            for doc_name, variable in zip(names, route.variables, strict=True):
                field = _resolve(method.input, variable.field_path)
                schema = self._constrained_value(field) if field is not None else {"type": "string"}
                if "$ref" in schema:
                    schema = {"type": "string"}
                description = (
                    self._schema.comment(f"{field.containing_type.full_name}.{field.name}")
                    if field is not None
                    else ""
                )
                if doc_name != variable.name or len(variable.field_path) > 1:
                    description = f"{description} (binds `{variable.name}`)".strip()
                parameters.append(
                    {
                        "name": doc_name,
                        "in": "path",
                        "required": True,
                        "schema": schema,
                        **({"description": description} if description else {}),
                    }
                )
            skip = {v.field_path[0] for v in route.variables}
            if route.binding.body and route.binding.body != "*":
                skip.add(route.binding.body)
            if route.binding.body != "*":
                parameters.extend(
                    self.query_parameters(method.input, "", skip, 1, {method.input.full_name})
                )
            operation_id = method.name if method.name not in used_ids else method.full_name
            used_ids.add(operation_id)
            service_short = method.service.rsplit(".", 1)[-1]
            tags.setdefault(service_short, self._schema.services.get(method.service, ""))
            operation: dict[str, Any] = {
                "operationId": operation_id,
                "tags": [service_short],
                "summary": method.comment.split("\n", 1)[0] if method.comment else method.name,
                "description": method.comment or method.name,
                "parameters": parameters,
                "responses": self._responses(route),
            }
            if route.binding.body:
                operation["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": self._body_schema(route)}},
                }
            paths.setdefault(path, {})[route.verb.lower()] = operation
        for path, item in (extra_paths or {}).items():
            paths.setdefault(path, {}).update(item)
        self._flush()
        self._update_variants()
        components: dict[str, Any] = {
            "schemas": {
                **{k: v for k, v in sorted(self._components.items()) if v is not None},
                ERROR_SCHEMA: _error_schema(),
            },
            "responses": {
                f"Error{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": _ref(ERROR_SCHEMA)}},
                }
                for code, text in ERROR_RESPONSES.items()
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Access token from the identity service (customer, device "
                    "or staff).",
                },
                "publishableKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The channel's publishable key (web, app) for anonymous "
                    "browsing: read routes and sign-up/sign-in only.",
                },
            },
        }
        return {
            "openapi": "3.1.0",
            "info": {
                "title": self._title,
                "version": self._version,
                "description": "HTTP/JSON API of Tenpo, generated from the services' protos. "
                'Errors follow AIP-193: `{"error": {code, message, status, details}}` '
                "with a `google.rpc.ErrorInfo` whose `reason` is stable.",
            },
            "tags": [
                {"name": name, **({"description": text} if text else {})}
                for name, text in sorted(tags.items())
            ],
            "security": [{"bearerAuth": []}, {"publishableKey": []}],
            "paths": dict(sorted(paths.items())),
            "components": components,
        }

    def _body_schema(self, route: Route) -> dict[str, Any]:
        body = route.binding.body
        if body == "*":
            return self._message_ref(route.method.input)
        field: Any = route.method.input.fields_by_name[body]
        schema = self._field_schema(field)
        schema.pop("description", None)
        if "update_mask" in route.method.input.fields_by_name and "$ref" in schema:
            # Decided once the resource's schema is built (see _update_variants).
            self._update_bodies.append((schema, field.message_type.full_name))
        return schema

    def _update_variants(self) -> None:
        """AIP-134/203: in an update only the fields named by update_mask are read, so a
        resource's REQUIRED fields are not required in its update body. Such bodies refer to
        a copy of the resource schema without the top-level ``required``."""
        for schema, name in self._update_bodies:
            base = self._components.get(name)
            if not base or not base.get("required"):
                continue
            variant = f"{name}_Update"
            if variant not in self._components:
                copy = {k: v for k, v in base.items() if k != "required"}
                note = "As an update body: only the fields named by `updateMask` are read."
                copy["description"] = f"{base.get('description', '')}\n\n{note}".strip()
                self._components[variant] = copy
            schema["$ref"] = f"#/components/schemas/{variant}"

    def _responses(self, route: Route) -> dict[str, Any]:
        special = self._success.get(route.method.full_name)
        if special is not None:
            return {**special, **self._error_refs()}
        output = route.method.output
        if route.binding.response_body:
            field = output.fields_by_name[route.binding.response_body]
            schema = self._field_schema(field)
            schema.pop("description", None)
        else:
            schema = self._message_ref(output)
        ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
        return {"200": ok, **self._error_refs()}

    @staticmethod
    def _error_refs() -> dict[str, Any]:
        refs: dict[str, Any] = {
            code: {"$ref": f"#/components/responses/Error{code}"} for code in ERROR_RESPONSES
        }
        refs["default"] = {"$ref": "#/components/responses/Error500"}
        return refs

    def message_schema(self, message: Any) -> dict[str, Any]:
        """A schema reference for extra (hand-documented) paths."""
        return self._message_ref(message)


def _parameter_names(route: Route) -> list[str]:
    """Plain names for path parameters: ``{product.id}`` → ``id`` (dots in parameter names
    trip up clients and generators), the full path with underscores when that is ambiguous."""
    short = [v.field_path[-1] for v in route.variables]
    if len(set(short)) == len(short):
        return short
    return ["_".join(v.field_path) for v in route.variables]


def _resolve(message: Any, path: tuple[str, ...]) -> Any:
    current: Any | None = message
    field: Any = None
    for name in path:
        if current is None:
            return None
        field = current.fields_by_name.get(name)
        if field is None:
            return None
        current = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    return field


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "AIP-193 error.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "status", "details"],
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status code."},
                    "message": {"type": "string", "description": "For developers."},
                    "status": {
                        "type": "string",
                        "description": "The google.rpc.Code name, e.g. NOT_FOUND.",
                    },
                    "details": {
                        "type": "array",
                        "description": "google.rpc details; always one ErrorInfo (reason, "
                        "domain, metadata), a BadRequest for invalid fields.",
                        "items": {
                            "type": "object",
                            "required": ["@type"],
                            "properties": {"@type": {"type": "string"}},
                        },
                    },
                },
            }
        },
    }
