"""Gateway schema layer: the services, methods, HTTP rules and comments of the descriptor set.

The descriptor set (``tenpo_descriptors.binpb``, written by ``tenpo.devtools.protogen`` with
imports and source info) is the gateway's only knowledge of the backends: every ``tenpo.*``
service in it is proxied, every ``google.api.http`` rule becomes a route. Its files are
added to the default descriptor pool (the generated modules put the same files there), so
message classes, ``Any`` resolution and server reflection all see one pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from tenpo.kit.access import AccessRule

DESCRIPTOR_SET_FILE = "tenpo_descriptors.binpb"
#: Only services of these packages are exposed; third-party and google.* ones never are.
SERVICE_PACKAGE_PREFIX = "tenpo."

# Field numbers in descriptor.proto, for source-info paths.
_FILE_MESSAGE = 4
_FILE_ENUM = 5
_FILE_SERVICE = 6
_MESSAGE_FIELD = 2
_MESSAGE_NESTED = 3
_MESSAGE_ENUM = 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2


@dataclass(frozen=True)
class HttpBinding:
    """One ``google.api.http`` pattern (the main one or an ``additional_bindings`` entry)."""

    verb: str  # GET, POST, PUT, PATCH, DELETE
    template: str
    body: str  # "", "*" or a top-level field name
    response_body: str


@dataclass(frozen=True)
class Method:
    service: str  # tenpo.catalog.v1.CatalogService
    name: str  # GetProduct
    input: descriptor.Descriptor
    output: descriptor.Descriptor
    client_streaming: bool
    server_streaming: bool
    bindings: tuple[HttpBinding, ...]
    comment: str
    #: Who may call, from the method's ``(tenpo.common.v1.access)`` option; None when the
    #: contract states no rule (the gateway then admits no one).
    access: AccessRule | None = None

    @property
    def full_name(self) -> str:
        return f"{self.service}.{self.name}"

    @property
    def path(self) -> str:
        """The gRPC method path, ``/tenpo.catalog.v1.CatalogService/GetProduct``."""
        return f"/{self.service}/{self.name}"

    @property
    def package(self) -> str:
        return self.service.rsplit(".", 1)[0]

    @property
    def owner(self) -> str:
        """The service that owns the package: ``tenpo.catalog.v1`` → ``catalog``."""
        return self.service.split(".")[1]

    @property
    def is_read(self) -> bool:
        """Reads are the methods mapped to GET: the contract says they change nothing."""
        return any(b.verb == "GET" for b in self.bindings)

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.input)

    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.output)


@dataclass
class Schema:
    """What the gateway knows about the backends, loaded once at start-up."""

    pool: descriptor_pool.DescriptorPool
    services: dict[str, str] = field(default_factory=dict)  # full name → comment
    methods: dict[str, Method] = field(default_factory=dict)  # by gRPC path
    comments: dict[str, str] = field(default_factory=dict)  # element full name → comment

    def method(self, full_name: str) -> Method | None:
        service, _, name = full_name.rpartition(".")
        return self.methods.get(f"/{service}/{name}")

    def message(self, full_name: str) -> descriptor.Descriptor | None:
        try:
            return self.pool.FindMessageTypeByName(full_name)
        except KeyError:
            return None

    def comment(self, full_name: str) -> str:
        return self.comments.get(full_name, "")

    def http_methods(self) -> Iterator[Method]:
        return (m for m in self.methods.values() if m.bindings)


def find_descriptor_set() -> Path:
    """The descriptor set next to the generated ``tenpo`` package (``libs/protos``)."""
    import tenpo

    for directory in tenpo.__path__:
        candidate = Path(directory).parent / DESCRIPTOR_SET_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{DESCRIPTOR_SET_FILE} not found next to the generated protos; run `make protos`"
    )


def _bindings(options: descriptor_pb2.MethodOptions) -> tuple[HttpBinding, ...]:
    if not options.HasExtension(annotations_pb2.http):
        return ()
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    rules = [rule, *rule.additional_bindings]
    found: list[HttpBinding] = []
    for r in rules:
        pattern = r.WhichOneof("pattern")
        if pattern is None:
            continue
        if pattern == "custom":
            verb, template = r.custom.kind.upper(), r.custom.path
        else:
            verb, template = pattern.upper(), getattr(r, pattern)
        found.append(HttpBinding(verb, template, r.body, r.response_body))
    return tuple(found)


def _collect_comments(file: descriptor_pb2.FileDescriptorProto, into: dict[str, str]) -> None:
    by_path = {
        tuple(location.path): location.leading_comments
        for location in file.source_code_info.location
        if location.leading_comments
    }

    def text(path: tuple[int, ...]) -> str:
        return _clean(by_path.get(path, ""))

    def message(proto: descriptor_pb2.DescriptorProto, prefix: str, path: tuple[int, ...]) -> None:
        name = f"{prefix}.{proto.name}"
        into[name] = text(path)
        for i, f in enumerate(proto.field):
            into[f"{name}.{f.name}"] = text((*path, _MESSAGE_FIELD, i))
        for i, nested in enumerate(proto.nested_type):
            message(nested, name, (*path, _MESSAGE_NESTED, i))
        for i, e in enumerate(proto.enum_type):
            enum(e, name, (*path, _MESSAGE_ENUM, i))

    def enum(proto: descriptor_pb2.EnumDescriptorProto, prefix: str, path: tuple[int, ...]) -> None:
        name = f"{prefix}.{proto.name}"
        into[name] = text(path)
        for i, v in enumerate(proto.value):
            # Enum values are scoped like siblings of the enum in protobuf; keyed under the
            # enum here so that equal value names of two enums cannot collide.
            into[f"{name}.{v.name}"] = text((*path, _ENUM_VALUE, i))

    package = file.package
    for i, m in enumerate(file.message_type):
        message(m, package, (_FILE_MESSAGE, i))
    for i, e in enumerate(file.enum_type):
        enum(e, package, (_FILE_ENUM, i))
    for i, s in enumerate(file.service):
        service_name = f"{package}.{s.name}"
        into[service_name] = text((_FILE_SERVICE, i))
        for j, rpc in enumerate(s.method):
            into[f"{service_name}.{rpc.name}"] = text((_FILE_SERVICE, i, _SERVICE_METHOD, j))


def _clean(comment: str) -> str:
    return "\n".join(line.strip() for line in comment.strip().splitlines()).strip()


def load_schema(path: Path | None = None) -> Schema:
    """Read the descriptor set, register its files, index services, methods and comments."""
    data = (path or find_descriptor_set()).read_bytes()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.Default()
    schema = Schema(pool=pool)
    # --include_imports lists dependencies before dependents, so one pass suffices.
    for file in file_set.file:
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.Add(file)
        _collect_comments(file, schema.comments)
    for file in file_set.file:
        if not file.package.startswith(SERVICE_PACKAGE_PREFIX):
            continue
        for service in file.service:
            service_name = f"{file.package}.{service.name}"
            schema.services[service_name] = schema.comments.get(service_name, "")
            for method in service.method:
                method_descriptor = pool.FindMethodByName(f"{service_name}.{method.name}")
                found = Method(
                    service=service_name,
                    name=method.name,
                    input=method_descriptor.input_type,
                    output=method_descriptor.output_type,
                    client_streaming=method.client_streaming,
                    server_streaming=method.server_streaming,
                    bindings=_bindings(method.options),
                    comment=schema.comments.get(f"{service_name}.{method.name}", ""),
                    access=AccessRule.from_options(method.options),
                )
                schema.methods[found.path] = found
    return schema
