"""The gateway's edge (HAProxy on the gRPC port, ``GATEWAY_EDGE=haproxy``): signed-in unary
calls go straight to the owning service with the gateway-only headers stripped and
``x-tenpo-edge: direct`` set; streams, publishable keys and service-only methods go through
the Python ingress, which keeps every check and limits per client address as the edge saw
it; a service that is down is UNAVAILABLE ``BACKEND_UNAVAILABLE`` (a second replica takes
over); the services' call guard rate-limits direct calls per principal."""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.gateway.config import GatewaySettings
from services.gateway.descriptors import load_schema
from services.gateway.edge import (
    CONFIG_FILE,
    MAP_FILE,
    direct_methods,
    haproxy_binary,
    render,
    servers,
)
from tenpo.customer.v1 import identity_service_pb2 as identity_api
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.ratelimit import TokenBucketLimiter
from tests.services.conftest import Tokens
from tests.services.gateway.conftest import (
    WEB_KEY,
    FakeInventory,
    GatewayFactory,
    InventoryHandle,
    RunningGateway,
    guarded_inventory,
    inventory_api,
    inventory_grpc,
)
from tests.stack import quiet_ports

FIND = "/tenpo.inventory.v1.InventoryService/FindNearbyAvailability"
WATCH = "/tenpo.inventory.v1.InventoryService/WatchAvailability"
ISSUE_MAIL_TOKEN = "/tenpo.customer.v1.IdentityService/IssueMailToken"
TIMEOUT = 30


def _with_edge(start_gateway: GatewayFactory, **overrides: Any) -> Any:
    """A gateway with HAProxy in front, on this worker's own ports (not ephemeral ones another
    worker's server might take between their choice and HAProxy's bind)."""
    return start_gateway(
        edge="haproxy", grpc_port=quiet_ports(), edge_ingress_port=quiet_ports(), **overrides
    )


def _edge_target(gw: RunningGateway) -> str:
    assert gw.gateway.edge is not None
    return f"127.0.0.1:{gw.gateway.edge.port}"


def _device(tokens: Tokens) -> tuple[tuple[str, str], ...]:
    token = tokens.mint(subject=str(uuid.uuid4()), kind="device", channel="KIOSK")
    return tokens.metadata(token)


def test_only_signed_in_unary_calls_of_non_service_methods_go_direct() -> None:
    settings = GatewaySettings(
        targets={"inventory": "ipv4:127.0.0.1:7001,127.0.0.1:7101", "customer": "c:7003"}
    )
    schema = load_schema()
    direct = direct_methods(schema, settings)
    inventory = direct["inventory"]
    assert FIND in inventory
    assert WATCH not in inventory  # a stream: the Python ingress caps them
    customer = direct["customer"]
    assert ISSUE_MAIL_TOKEN not in customer  # service-only
    for path in customer:  # sign-in, sign-up, refresh: per-address limits in the ingress
        rule = schema.methods[path].access
        assert rule is not None and not rule.sign_in_rate_limit
    assert "catalog" not in direct  # no target, no route
    files = render(
        settings, schema, host="0.0.0.0", port=7000, ingress="127.0.0.1:7999", directory=Path("/e")
    )
    config, routes = files[CONFIG_FILE], files[MAP_FILE].splitlines()
    for header in ("x-tenpo-channel", "x-tenpo-channel-proof", "x-tenpo-edge-client"):
        assert f"  http-request del-header {header}\n" in config
    assert f"{FIND} inventory" in routes and not any(WATCH in route for route in routes)
    assert "  server inventory0 127.0.0.1:7001\n  server inventory1 127.0.0.1:7101\n" in config
    assert "  server customer0 c:7003 resolvers default" in config  # a name: resolved again
    assert "  server ingress 127.0.0.1:7999\n" in config
    assert "  bind 0.0.0.0:7000 proto h2\n" in config
    assert servers("dns:///inventory:50052") == ["inventory:50052"]


def test_without_haproxy_the_edge_says_what_is_missing(tmp_path: Path) -> None:
    missing = GatewaySettings(edge="haproxy", edge_binary=str(tmp_path / "haproxy"))
    with pytest.raises(RuntimeError, match="needs HAProxy"):
        haproxy_binary(missing)
    assert Path(haproxy_binary(GatewaySettings(edge="haproxy"))).name == "haproxy"


async def test_a_device_call_goes_straight_to_the_service_without_gateway_headers(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """The gateway's own limit (one call) would refuse the second call: both pass, so
    neither went through the Python ingress; forged gateway-only headers never arrive."""
    fake_inventory.fake.stock["SKU-E"] = 3
    request = inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "SKU-E", "quantity": 1}])
    forged = (
        ("x-tenpo-channel", "POS"),
        ("x-tenpo-channel-proof", "forged"),
        ("x-tenpo-edge", "forged"),
    )
    async with (
        _with_edge(
            start_gateway,
            targets={"inventory": fake_inventory.target},
            principal_rate=0.01,
            principal_burst=1,
        ) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        stub = inventory_grpc.InventoryServiceStub(channel)
        metadata = (*_device(tokens), *forged)
        for _ in range(2):
            response = await stub.FindNearbyAvailability(
                request, metadata=metadata, timeout=TIMEOUT, wait_for_ready=True
            )
            assert response.locations[0].available[0].quantity == 3
    seen = fake_inventory.fake.seen_metadata
    assert len(seen) == 2
    for metadata_seen in seen:
        assert metadata_seen["x-tenpo-edge"] == "direct"
        assert "x-tenpo-channel" not in metadata_seen
        assert "x-tenpo-channel-proof" not in metadata_seen
        assert metadata_seen["authorization"].startswith("Bearer ")


async def test_streams_and_publishable_keys_go_through_the_python_ingress(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    fake_inventory.fake.stock["SKU-S"] = 7
    async with (
        _with_edge(start_gateway, targets={"inventory": fake_inventory.target}) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        stub = inventory_grpc.InventoryServiceStub(channel)
        stream = stub.WatchAvailability(
            inventory_api.WatchAvailabilityRequest(skus=["SKU-S"]),
            metadata=_device(tokens),
            timeout=TIMEOUT,
            wait_for_ready=True,
        )
        first = await stream.read()
        assert first.sku == "SKU-S" and first.available_to_promise == 7
        await fake_inventory.fake.updates.put(("SKU-S", 6))
        second = await stream.read()
        assert second.available_to_promise == 6
        stream.cancel()
        keyed = await stub.FindNearbyAvailability(
            inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "SKU-S", "quantity": 1}]),
            metadata=(("x-api-key", WEB_KEY), ("x-tenpo-channel", "POS")),
            timeout=TIMEOUT,
        )
        assert keyed.locations
    streamed, by_key = fake_inventory.fake.seen_metadata
    assert "x-tenpo-edge" not in streamed  # the ingress made this call
    # Only the gateway set the key's channel, with its proof; the client's POS is gone.
    assert by_key["x-tenpo-channel"] == "WEB"
    assert by_key["x-tenpo-channel-proof"]
    assert "x-tenpo-edge" not in by_key


async def test_service_only_methods_stay_unreachable(
    start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    staff = tokens.mint(subject=str(uuid.uuid4()), kind="staff", scopes=["mail:send"])
    async with (
        _with_edge(start_gateway, targets={"customer": "127.0.0.1:9"}) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        call = channel.unary_unary(ISSUE_MAIL_TOKEN)
        for metadata in (_device(tokens), tokens.metadata(staff)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(
                    identity_api.IssueMailTokenRequest().SerializeToString(),
                    metadata=metadata,
                    timeout=TIMEOUT,
                    wait_for_ready=True,
                )
            assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert decode_error(raised.value).reason == "PRINCIPAL_KIND_NOT_ALLOWED"


async def test_errors_before_any_message_keep_their_status_on_both_routes(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """An answer that is only a status (Trailers-Only) keeps its code through the edge, on
    the ingress route and the direct one (a Caddy edge once turned one in six into UNKNOWN
    "Stream removed")."""
    codes: collections.Counter[str] = collections.Counter()
    async with (
        _with_edge(
            start_gateway,
            targets={"customer": "127.0.0.1:9", "inventory": fake_inventory.target},
        ) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        issue = channel.unary_unary(ISSUE_MAIL_TOKEN)
        stub = inventory_grpc.InventoryServiceStub(channel)
        for _ in range(60):
            try:  # the ingress refuses it
                await issue(
                    identity_api.IssueMailTokenRequest().SerializeToString(),
                    metadata=_device(tokens),
                    timeout=TIMEOUT,
                    wait_for_ready=True,
                )
            except grpc.aio.AioRpcError as error:
                codes[f"ingress {error.code().name}"] += 1
            try:  # the service refuses it
                await stub.FindNearbyAvailability(
                    inventory_api.FindNearbyAvailabilityRequest(),
                    metadata=(("authorization", "Bearer not-a-token"),),
                    timeout=TIMEOUT,
                )
            except grpc.aio.AioRpcError as error:
                codes[f"direct {error.code().name}"] += 1
    assert codes == {"ingress PERMISSION_DENIED": 60, "direct UNAUTHENTICATED": 60}


async def test_a_service_that_is_down_is_backend_unavailable(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    request = inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "SKU-D", "quantity": 1}])
    async with (
        _with_edge(start_gateway, targets={"inventory": fake_inventory.target}) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        stub = inventory_grpc.InventoryServiceStub(channel)
        await stub.FindNearbyAvailability(
            request, metadata=_device(tokens), timeout=TIMEOUT, wait_for_ready=True
        )
        await fake_inventory.stop()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.FindNearbyAvailability(request, metadata=_device(tokens), timeout=TIMEOUT)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert decode_error(raised.value).reason == "BACKEND_UNAVAILABLE"
    assert "127.0.0.1" not in (raised.value.details() or "")


class _SlowInventory(FakeInventory):
    async def FindNearbyAvailability(self, request: Any, context: Any) -> Any:
        self._record(context)
        await asyncio.sleep(30)
        return inventory_api.FindNearbyAvailabilityResponse()


async def test_a_service_that_does_not_answer_in_time_is_backend_timeout(
    dev_keys: object, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """The edge waits at most backend_timeout_seconds for a direct call's answer, whatever
    deadline the client set, as the ingress does."""
    slow = _SlowInventory()
    handle = await guarded_inventory(dev_keys, slow)
    request = inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "SKU-T", "quantity": 1}])
    try:
        async with (
            _with_edge(
                start_gateway,
                targets={"inventory": handle.target},
                backend_timeout_seconds=1.0,
            ) as gw,
            grpc.aio.insecure_channel(_edge_target(gw)) as channel,
        ):
            stub = inventory_grpc.InventoryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.FindNearbyAvailability(
                    request, metadata=_device(tokens), timeout=TIMEOUT, wait_for_ready=True
                )
    finally:
        await handle.stop()
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert decode_error(raised.value).reason == "BACKEND_TIMEOUT"
    assert slow.seen_metadata[0]["x-tenpo-edge"] == "direct"  # it was the direct route


async def test_the_call_guard_limits_direct_calls_per_principal(
    dev_keys: object, tokens: Tokens
) -> None:
    """Marked calls of one signed-in principal share a bucket; unmarked calls (through the
    gateway, which limits them itself), other principals and services are not counted."""
    handle = await guarded_inventory(
        dev_keys, FakeInventory(), edge_limiter=TokenBucketLimiter(0.01, 1)
    )
    alice, bob = (
        tokens.mint(subject=str(uuid.uuid4()), kind="customer", channel="APP") for _ in range(2)
    )
    service = tokens.mint(subject="cart", kind="service", scopes=["inventory:read"])
    direct = (("x-tenpo-edge", "direct"),)
    request = inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "X", "quantity": 1}])
    try:
        async with grpc.aio.insecure_channel(handle.target) as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)

            async def call(token: str, marked: bool) -> str:
                metadata = (*tokens.metadata(token), *(direct if marked else ()))
                try:
                    await stub.FindNearbyAvailability(request, metadata=metadata, timeout=TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    return f"{error.code().name} {decode_error(error).reason}"
                return "OK"

            assert await call(alice, True) == "OK"
            assert await call(alice, True) == "RESOURCE_EXHAUSTED RATE_LIMITED"
            assert await call(alice, False) == "OK"
            assert await call(bob, True) == "OK"
            for _ in range(3):
                assert await call(service, True) == "OK"
    finally:
        await handle.stop()


async def test_the_ingress_limits_per_client_address_as_the_edge_saw_it(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory
) -> None:
    """Behind the edge every peer of the ingress is HAProxy: the per-address caps key on the
    address the edge sets, never on one a client sends."""
    fake_inventory.fake.stock["SKU-P"] = 2
    request = inventory_api.WatchAvailabilityRequest(skus=["SKU-P"])
    keyed = (("x-api-key", WEB_KEY),)
    async with _with_edge(
        start_gateway, targets={"inventory": fake_inventory.target}, stream_max_per_address=1
    ) as gw:
        assert gw.gateway.edge is not None
        behind = f"127.0.0.1:{gw.gateway.edge.ingress_port}"
        async with (
            grpc.aio.insecure_channel(_edge_target(gw)) as channel,
            grpc.aio.insecure_channel(behind) as inner,
        ):
            stub = inventory_grpc.InventoryServiceStub(channel)
            held = stub.WatchAvailability(
                request,
                metadata=(*keyed, ("x-tenpo-edge-client", "10.0.0.1")),
                timeout=TIMEOUT,
                wait_for_ready=True,
            )
            assert (await held.read()).sku == "SKU-P"
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # a forged address: ignored
                await stub.WatchAvailability(
                    request, metadata=(*keyed, ("x-tenpo-edge-client", "10.0.0.2")), timeout=TIMEOUT
                ).read()
            # What the edge says is believed: another client's stream is its own.
            other = inventory_grpc.InventoryServiceStub(inner).WatchAvailability(
                request, metadata=(*keyed, ("x-tenpo-edge-client", "192.0.2.7")), timeout=TIMEOUT
            )
            assert (await other.read()).sku == "SKU-P"
            held.cancel()
            other.cancel()
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert decode_error(refused.value).reason == "STREAMS_EXHAUSTED"


async def test_a_replica_that_is_down_is_skipped(
    fake_inventory: InventoryHandle, start_gateway: GatewayFactory, tokens: Tokens
) -> None:
    """Two replicas, one refusing connections: every direct call is answered by the other
    (the connection refused is retried on the next replica, then the check takes it out)."""
    fake_inventory.fake.stock["SKU-R"] = 4
    down = quiet_ports()  # nothing listens there
    request = inventory_api.FindNearbyAvailabilityRequest(lines=[{"sku": "SKU-R", "quantity": 1}])
    async with (
        _with_edge(
            start_gateway,
            targets={"inventory": f"ipv4:127.0.0.1:{down},{fake_inventory.target}"},
            principal_rate=1000,
        ) as gw,
        grpc.aio.insecure_channel(_edge_target(gw)) as channel,
    ):
        stub = inventory_grpc.InventoryServiceStub(channel)
        answers = await asyncio.gather(
            *(
                stub.FindNearbyAvailability(
                    request, metadata=_device(tokens), timeout=TIMEOUT, wait_for_ready=True
                )
                for _ in range(40)
            )
        )
    assert [a.locations[0].available[0].quantity for a in answers] == [4] * 40
    assert len(fake_inventory.fake.seen_metadata) == 40


def test_a_port_someone_holds_stops_the_edge_instead_of_sharing_it(tmp_path: Path) -> None:
    """HAProxy binds without SO_REUSEPORT: an edge (or anything) already on the port is an
    error the supervisor reports, never a port whose calls two processes split."""
    import socket
    import subprocess

    from services.gateway.edge import write

    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another HAProxy would
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        files = render(
            GatewaySettings(edge="haproxy"),
            load_schema(),
            host="127.0.0.1",
            port=port,
            ingress=f"127.0.0.1:{port + 1}",
            directory=tmp_path,
        )
        config = write(files, tmp_path)
        try:
            started = subprocess.run(
                [haproxy_binary(GatewaySettings()), "-db", "-f", str(config)],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("HAProxy shared a port another process listens on")
    assert started.returncode != 0
    assert "cannot bind socket" in started.stderr
