"""Malformed requests against every method of every service: never INTERNAL or UNKNOWN.

The methods come from the descriptor set (a new method is swept without touching this
file). For each method a request with every field filled plausibly is built, then one
field at a time is broken: invalid UTF-8 in a string, an enum number no enum defines, a
Timestamp or Duration at int64's ends or with nanos out of range, a NaN or infinite float;
random bytes and truncated encodings go along. Each request is sent as raw bytes (so that
nothing on the client side cleans it up) by a principal of every kind in turn. The sweep is
deterministic (a fixed seed) and bounded (at most ``MAX_CASES_PER_METHOD`` per method)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

import tenpo
from services.customer.app import definition as customer_definition
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.devtools.stack.net import free_port
from tenpo.kit import access, migrations
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import running
from tenpo.kit.service_token import StaticToken
from tests.services.cart.conftest import FakeCatalog, FakeInventory, Upstreams, start_cart
from tests.services.catalog.conftest import _start as start_catalog
from tests.services.conftest import Tokens
from tests.services.customer.conftest import customer_settings
from tests.services.inventory.conftest import start_inventory
from tests.services.notification.conftest import FakeDirectory, Harness, RecordingSms
from tests.services.notification.conftest import prepare_database as prepare_notification_database
from tests.services.order.conftest import SERVICE_SCOPES as ORDER_SCOPES
from tests.services.order.conftest import start_order

FD = descriptor.FieldDescriptor
SEED = 20_261_130
MAX_CASES_PER_METHOD = 40
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INT32_MIN = -(2**31)
#: A fixed id for every id-like string, so requests get past id parsing to the rest.
SOME_ID = "0b9a3a4e-3c1f-4b7e-9c61-1d5a2f3e4b5c"
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


# ---------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    path: str
    input: descriptor.Descriptor
    client_streaming: bool
    server_streaming: bool


def service_methods(package_prefix: str) -> list[Method]:
    """Every method of the services under ``package_prefix``, from the descriptor set."""
    (directory,) = (p for p in tenpo.__path__ if (_set_path(p)).is_file())
    file_set = descriptor_pb2.FileDescriptorSet.FromString(_set_path(directory).read_bytes())
    pool = descriptor_pool.Default()
    found: list[Method] = []
    for file in file_set.file:
        if not file.package.startswith(package_prefix):
            continue
        for service in file.service:
            for method in service.method:
                full = pool.FindMethodByName(f"{file.package}.{service.name}.{method.name}")
                found.append(
                    Method(
                        f"/{file.package}.{service.name}/{method.name}",
                        full.input_type,
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return found


def _set_path(directory: str) -> Path:
    return Path(directory).parent / "tenpo_descriptors.binpb"


# ------------------------------------------------------------------- request builders


def _message_class(desc: descriptor.Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


def _plausible_scalar(field: descriptor.FieldDescriptor) -> Any:
    if field.type == FD.TYPE_STRING:
        name = field.name
        if name.endswith(("id", "ids")):
            return SOME_ID
        if "currency" in name:
            return "JPY"
        if "email" in name:
            return "fuzz@example.jp"
        return "x"
    if field.type == FD.TYPE_BYTES:
        return b"x"
    if field.type == FD.TYPE_BOOL:
        return True
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return 1.0
    if field.type == FD.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number]
        return values[0] if values else 0
    return 1


def plausible(desc: descriptor.Descriptor, depth: int = 0) -> Message:
    """A message with every field set to a harmless value (nested messages to depth 3)."""
    message = _message_class(desc)()
    for field in desc.fields:
        if field.containing_oneof is not None and field.containing_oneof.fields[0] is not field:
            continue  # one member per oneof
        if field.type == FD.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if field.message_type.GetOptions().map_entry:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                value: Message = _message_class(field.message_type)(seconds=1_800_000_000)
            elif field.message_type.full_name == "google.protobuf.Duration":
                value = _message_class(field.message_type)(seconds=600)
            else:
                value = plausible(field.message_type, depth + 1)
            if _repeated(field):
                getattr(message, field.name).add().CopyFrom(value)
            else:
                getattr(message, field.name).CopyFrom(value)
        elif _repeated(field):
            getattr(message, field.name).append(_plausible_scalar(field))
        else:
            setattr(message, field.name, _plausible_scalar(field))
    return message


def _repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _field_paths(
    desc: descriptor.Descriptor, prefix: tuple[descriptor.FieldDescriptor, ...] = ()
) -> Iterator[tuple[descriptor.FieldDescriptor, ...]]:
    """Every field reachable through singular or first-element message fields."""
    for field in desc.fields:
        path = (*prefix, field)
        yield path
        if (
            field.type == FD.TYPE_MESSAGE
            and len(prefix) < 3
            and not field.message_type.GetOptions().map_entry
            and field.message_type.full_name
            not in ("google.protobuf.Timestamp", "google.protobuf.Duration")
        ):
            yield from _field_paths(field.message_type, path)


def _reach(message: Message, path: tuple[descriptor.FieldDescriptor, ...]) -> Message | None:
    """The message holding the last field of ``path`` (created as needed)."""
    for field in path[:-1]:
        if _repeated(field):
            items = getattr(message, field.name)
            message = items[0] if len(items) else items.add()
        else:
            message = getattr(message, field.name)
    return message


def _set(message: Message, field: descriptor.FieldDescriptor, value: Any) -> None:
    if _repeated(field):
        items = getattr(message, field.name)
        del items[:]
        items.append(value)
    else:
        setattr(message, field.name, value)


def _invalid_utf8(message: Message, field: descriptor.FieldDescriptor) -> bytes:
    """``message`` with ``field`` holding invalid UTF-8: protobuf will not build that, so the
    field is cleared and its bytes appended by hand (the last occurrence wins)."""
    message.ClearField(field.name)
    bad = b"ok\xff\xfe\xc0"
    tag = (field.number << 3) | 2
    return message.SerializeToString() + _varint(tag) + _varint(len(bad)) + bad


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _nest(path: tuple[descriptor.FieldDescriptor, ...], root: Message, inner: bytes) -> bytes:
    """Re-encode ``root`` with the message at ``path[:-1]`` replaced by raw ``inner`` bytes."""
    if len(path) == 1:
        return inner
    head = path[0]
    copy = _message_class(root.DESCRIPTOR)()
    copy.CopyFrom(root)
    child = getattr(copy, head.name)
    child_message = child[0] if _repeated(head) else child
    nested = _nest(path[1:], child_message, inner)
    copy.ClearField(head.name)
    return (
        copy.SerializeToString() + _varint((head.number << 3) | 2) + _varint(len(nested)) + nested
    )


def malformed_requests(desc: descriptor.Descriptor, rng: random.Random) -> list[tuple[str, bytes]]:
    """(what is wrong, request bytes) for one input type."""
    base = plausible(desc)
    encoded = base.SerializeToString()
    cases: list[tuple[str, bytes]] = [
        ("random bytes", rng.randbytes(rng.randint(1, 64))),
        ("random bytes", rng.randbytes(rng.randint(1, 64))),
        ("wrong wire type", b"\x0d\xff\xff"),
        ("plausible", encoded),
    ]
    if len(encoded) > 2:
        cases.append(("truncated", encoded[: rng.randint(1, len(encoded) - 1)]))
    for path in _field_paths(desc):
        field = path[-1]
        name = ".".join(f.name for f in path)
        holder_type = path[-2].message_type if len(path) > 1 else desc
        if field.type == FD.TYPE_STRING:
            holder = _reach(_copy(base), path)
            assert holder is not None and holder.DESCRIPTOR is holder_type
            cases.append(
                (f"invalid UTF-8 in {name}", _nest(path, base, _invalid_utf8(holder, field)))
            )
        elif field.type == FD.TYPE_ENUM:
            for number in (999, -1, INT32_MIN):
                cases.append((f"{name} = {number}", _mutated(base, path, number)))
        elif field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            for number in (math.nan, math.inf, -math.inf):
                cases.append((f"{name} = {number}", _mutated(base, path, number)))
        elif field.type == FD.TYPE_MESSAGE and field.message_type.full_name in (
            "google.protobuf.Timestamp",
            "google.protobuf.Duration",
        ):
            for seconds, nanos in ((INT64_MAX, 0), (INT64_MIN, 0), (0, -1), (1, 2_000_000_000)):
                value = _message_class(field.message_type)(seconds=seconds, nanos=nanos)
                cases.append((f"{name} = {seconds}s {nanos}ns", _mutated(base, path, value)))
    if len(cases) > MAX_CASES_PER_METHOD:
        cases = cases[:5] + rng.sample(cases[5:], MAX_CASES_PER_METHOD - 5)
    return cases


def _copy(message: Message) -> Message:
    copy = _message_class(message.DESCRIPTOR)()
    copy.CopyFrom(message)
    return copy


def _mutated(base: Message, path: tuple[descriptor.FieldDescriptor, ...], value: Any) -> bytes:
    message = _copy(base)
    holder = _reach(message, path)
    assert holder is not None
    field = path[-1]
    if isinstance(value, Message):
        if _repeated(field):
            items = getattr(holder, field.name)
            del items[:]
            items.add().CopyFrom(value)
        else:
            getattr(holder, field.name).CopyFrom(value)
    else:
        _set(holder, field, value)
    return message.SerializeToString()


# ---------------------------------------------------------------------------- calling


def principals(tokens: Tokens) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    every_scope = [
        "catalog:write",
        "inventory:read",
        "inventory:write",
        "inventory:reserve",
        "customers:read",
        "customers:write",
        "clients:write",
        "carts:read",
        "carts:write",
        "carts:checkout",
        "promotions:write",
        "promotions:redeem",
        "orders:read",
        "orders:write",
        "notifications:read",
        "notifications:write",
        "notifications:send",
    ]
    return [
        ("anonymous", ()),
        ("customer", tokens.metadata(tokens.mint(subject=SOME_ID, kind="customer", channel="APP"))),
        (
            "device",
            tokens.metadata(
                tokens.mint(
                    subject="device-fuzz",
                    kind="device",
                    channel="KIOSK",
                    store_id="shibuya",
                    scopes=every_scope,
                )
            ),
        ),
        (
            "staff",
            tokens.metadata(
                tokens.mint(
                    subject="staff-fuzz", kind="staff", scopes=every_scope, channel="BACK_OFFICE"
                )
            ),
        ),
        (
            "service",
            tokens.metadata(tokens.mint(subject="svc-fuzz", kind="service", scopes=every_scope)),
        ),
    ]


async def call_raw(
    channel: grpc.aio.Channel, method: Method, body: bytes, metadata: Any
) -> grpc.StatusCode:
    """Send ``body`` as the request; the status the call ended with (OK for a stream that is
    still running after its first message or a second of quiet)."""
    timeout = 10.0
    try:
        if method.client_streaming:

            async def requests() -> AsyncIterator[bytes]:
                yield body
                yield body

            if method.server_streaming:
                call: Any = channel.stream_stream(method.path)(
                    requests(), metadata=metadata, timeout=timeout
                )
                return await _first_of_stream(call)
            await channel.stream_unary(method.path)(requests(), metadata=metadata, timeout=timeout)
            return grpc.StatusCode.OK
        if method.server_streaming:
            call = channel.unary_stream(method.path)(body, metadata=metadata, timeout=timeout)
            return await _first_of_stream(call)
        await channel.unary_unary(method.path)(body, metadata=metadata, timeout=timeout)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        if error.code() in NEVER:
            # Keep the server's message: it names the exception when it is not ours.
            raise AssertionError(
                f"{method.path}: {error.code().name} {error.details()!r} "
                f"{decode_error(error).reason}"
            ) from None
        return error.code()


async def _first_of_stream(call: Any) -> grpc.StatusCode:
    try:
        async with asyncio.timeout(1.0):
            await call.read()
    except TimeoutError:
        pass
    finally:
        call.cancel()
    code = await call.code()
    return grpc.StatusCode.OK if code is grpc.StatusCode.CANCELLED else code


# ---------------------------------------------------------------------------- services


@pytest_asyncio.fixture(scope="module")
async def channels(
    postgres_admin_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """Every service running in process, each on a fresh database (the cart asks the real
    catalog and inventory, the order service the real cart and inventory; the notification
    service's customer directory, mail and SMS providers are the notification tests' own)."""
    names: list[str] = []

    def database() -> str:
        name = f"test_fuzz_{uuid.uuid4().hex[:12]}"
        names.append(name)
        return ensure_database(postgres_admin_url, name, secrets.token_urlsafe(18))

    async with contextlib.AsyncExitStack() as stack:
        try:
            found: dict[str, grpc.aio.Channel] = {}
            catalog = await stack.enter_async_context(
                contextlib.asynccontextmanager(start_catalog)(database(), nats_url, dev_keys, False)
            )
            inventory = await stack.enter_async_context(
                contextlib.asynccontextmanager(start_inventory)(database(), nats_url, dev_keys)
            )
            customer_url = database()
            await migrations.upgrade(customer_definition.migrations, customer_url)  # type: ignore[arg-type]
            customer = await stack.enter_async_context(
                running(customer_definition, customer_settings(customer_url, nats_url, dev_keys))
            )
            upstreams = Upstreams(
                FakeCatalog(),  # not served: the cart asks the real services below
                FakeInventory(),
                f"127.0.0.1:{catalog.port}",
                f"127.0.0.1:{inventory.port}",
            )
            cart = await stack.enter_async_context(
                contextlib.asynccontextmanager(start_cart)(
                    database(), nats_url, dev_keys, upstreams
                )
            )
            order_url = database()
            order = await stack.enter_async_context(
                contextlib.asynccontextmanager(start_order)(
                    order_url,
                    nats_url,
                    dev_keys,
                    StaticToken(
                        Tokens(dev_keys).mint(
                            subject="order-service", kind="service", scopes=ORDER_SCOPES
                        )
                    ),
                    cart_target=f"127.0.0.1:{cart.port}",
                    inventory_target=f"127.0.0.1:{inventory.port}",
                )
            )
            notification_url = database()
            await prepare_notification_database(notification_url)
            catcher = MailCatcher(port=free_port())
            catcher.start()
            stack.callback(catcher.stop)
            harness = Harness(
                notification_url, nats_url, dev_keys, catcher, FakeDirectory(), RecordingSms()
            )
            notification, _ = await stack.enter_async_context(harness.start())
            for name, host in (
                ("catalog", catalog),
                ("inventory", inventory),
                ("customer", customer),
                ("cart", cart),
                ("order", order),
                ("notification", notification),
            ):
                found[name] = await stack.enter_async_context(
                    grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
                )
            yield found
        finally:
            await stack.aclose()
            for name in names:
                drop_database(postgres_admin_url, name)


@pytest.mark.parametrize(
    "service", ["catalog", "inventory", "customer", "cart", "order", "notification"]
)
async def test_no_malformed_request_is_an_internal_error(
    service: str, channels: dict[str, grpc.aio.Channel], tokens: Tokens
) -> None:
    methods = service_methods(f"tenpo.{service}.")
    assert len(methods) >= 4, "the descriptor set lists the service's methods"
    rng = random.Random(f"{SEED}-{service}")
    callers = principals(tokens)
    codes: dict[grpc.StatusCode, int] = {}
    failures: list[str] = []
    sent = 0
    for method in methods:
        for i, (what, body) in enumerate(malformed_requests(method.input, rng)):
            who, metadata = callers[i % len(callers)]
            try:
                code = await call_raw(channels[service], method, body, metadata)
            except AssertionError as failure:
                failures.append(f"{failure} ({what}, as {who})")
                continue
            codes[code] = codes.get(code, 0) + 1
            sent += 1
    assert not failures, "\n".join(failures)
    # The sweep reached the handlers: most cases are refused as the caller's mistake.
    assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > sent // 4, codes


# ------------------------------------------------------------------ the reported cases


async def _refused(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return decode_error(caught.value)


async def test_the_reported_conversions_are_refused_naming_the_field(
    channels: dict[str, grpc.aio.Channel], tokens: Tokens
) -> None:
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp

    from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
    from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
    from tenpo.common.v1 import common_pb2
    from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
    from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
    from tenpo.inventory.v1 import resources_pb2 as inventory_pb

    catalog = catalog_grpc.CatalogServiceStub(channels["catalog"])
    inventory = inventory_grpc.InventoryServiceStub(channels["inventory"])
    customer = tokens.metadata(tokens.mint(subject=SOME_ID, kind="customer", channel="APP"))

    found = await _refused(catalog.SearchProducts(catalog_api.SearchProductsRequest(sort=999)))  # type: ignore[arg-type]
    assert (found.reason, found.field_violations[0].field) == ("ENUM_INVALID", "sort")

    for at in (Timestamp(seconds=INT64_MAX), Timestamp(seconds=INT64_MIN), Timestamp(nanos=-1)):
        found = await _refused(
            catalog.GetPrices(catalog_api.GetPricesRequest(skus=["S-1"], at_time=at))
        )
        assert (found.reason, found.field_violations[0].field) == ("TIMESTAMP_INVALID", "at_time")

    line = inventory_pb.StockLine(sku="S-1", quantity=1, location_id="tokyo-shibuya")
    for ttl in (Duration(seconds=INT64_MAX), Duration(seconds=1, nanos=2_000_000_000)):
        found = await _refused(
            inventory.ReserveStock(
                inventory_api.ReserveStockRequest(
                    owner=f"carts/{SOME_ID}", lines=[line], ttl=ttl, request_id=str(uuid.uuid4())
                ),
                metadata=customer,
            )
        )
        assert (found.reason, found.field_violations[0].field) == ("DURATION_INVALID", "ttl")
        found = await _refused(
            inventory.ExtendReservation(
                inventory_api.ExtendReservationRequest(id=SOME_ID, ttl=ttl), metadata=customer
            )
        )
        assert found.reason == "DURATION_INVALID"

    found = await _refused(
        inventory.FindNearbyAvailability(
            inventory_api.FindNearbyAvailabilityRequest(
                point=common_pb2.GeoPoint(latitude=35.66, longitude=139.7), radius_km=math.nan
            )
        )
    )
    assert (found.reason, found.field_violations[0].field) == ("NUMBER_INVALID", "radius_km")


@pytest.mark.parametrize("service", ["catalog", "inventory", "customer", "cart"])
async def test_invalid_utf8_is_invalid_argument_on_every_service(
    service: str, channels: dict[str, grpc.aio.Channel]
) -> None:
    # The first method an anonymous caller may call (its access rule comes first) taking a
    # string field, with invalid UTF-8 in it.
    method, field = next(
        (m, f)
        for m in service_methods(f"tenpo.{service}.")
        if not m.client_streaming and not m.server_streaming
        if (rule := access.rule_for(m.path)) is not None and rule.admits_anonymous
        for f in m.input.fields
        if f.type == FD.TYPE_STRING and not f.is_repeated
    )
    body = _invalid_utf8(_message_class(method.input)(), field)
    found = await _refused(channels[service].unary_unary(method.path)(body, timeout=10))
    assert found.reason == "REQUEST_MALFORMED"
