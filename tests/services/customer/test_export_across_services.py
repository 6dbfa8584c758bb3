"""The customer's export gathers the order, cart and notification services' exports: asked
with the caller's own credentials, merged into one document, and partial — the missing
service named, UNAVAILABLE, never INTERNAL — when one of them is down or too slow.

The other services are stand-ins here: real gRPC servers with the services' contracts,
which this test stops and stalls (the services' own exports are tested in their folders)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest_asyncio

from tenpo.cart.v1 import cart_service_pb2, cart_service_pb2_grpc
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.notification.v1 import notification_service_pb2, notification_service_pb2_grpc
from tenpo.order.v1 import order_service_pb2, order_service_pb2_grpc
from tests.services.customer.conftest import Service, bearer

CONTRACTS: dict[str, tuple[Any, Any, Any]] = {
    "order": (
        order_service_pb2_grpc.OrderServiceServicer,
        order_service_pb2_grpc.add_OrderServiceServicer_to_server,
        order_service_pb2.ExportCustomerDataResponse,
    ),
    "cart": (
        cart_service_pb2_grpc.CartServiceServicer,
        cart_service_pb2_grpc.add_CartServiceServicer_to_server,
        cart_service_pb2.ExportCustomerDataResponse,
    ),
    "notification": (
        notification_service_pb2_grpc.NotificationServiceServicer,
        notification_service_pb2_grpc.add_NotificationServiceServicer_to_server,
        notification_service_pb2.ExportCustomerDataResponse,
    ),
}


@dataclass
class StandIn:
    name: str
    server: grpc.aio.Server
    target: str
    #: (customer_id, authorization) of every call.
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: "ok", "refuse" or "stall" (answers after the customer service's deadline).
    mode: str = "ok"


async def start_stand_in(name: str, target: str = "127.0.0.1:0") -> StandIn:
    """A stand-in server; on a given ``target`` for a restarted service."""
    base, add, response_type = CONTRACTS[name]
    server = grpc.aio.server()
    port = server.add_insecure_port(target)
    stand_in = StandIn(name, server, f"127.0.0.1:{port}")

    async def export(request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        stand_in.calls.append((request.customer_id, str(metadata.get("authorization", ""))))
        if stand_in.mode == "refuse":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        if stand_in.mode == "stall":
            await asyncio.sleep(30)
        document = {"service": name, "customer_id": request.customer_id, "tables": {"x": [1]}}
        return response_type(json=json.dumps(document), content_type="application/json")

    servicer = type(
        f"StandIn{name.title()}", (base,), {"ExportCustomerData": staticmethod(export)}
    )()
    add(servicer, server)
    await server.start()
    return stand_in


@dataclass
class World:
    service: Service
    others: dict[str, StandIn]


@pytest_asyncio.fixture(scope="module")
async def world(service_factory: Callable[..., Any]) -> AsyncIterator[World]:
    others = {name: await start_stand_in(name) for name in CONTRACTS}
    try:
        service: Service = await service_factory(
            order_target=others["order"].target,
            cart_target=others["cart"].target,
            notification_target=others["notification"].target,
            export_timeout_seconds=2.0,
        )
        yield World(service, others)
    finally:
        for stand_in in others.values():
            await stand_in.server.stop(grace=None)


async def export(world: World, metadata: Any, customer_id: str = "me") -> Any:
    return await world.service.customers.ExportCustomerData(
        api.ExportCustomerDataRequest(customer_id=customer_id), metadata=metadata
    )


async def test_the_export_gathers_every_service_with_the_callers_own_credentials(
    world: World,
) -> None:
    customer_id, _, auth = await world.service.register("everywhere")
    response = await export(world, auth)
    assert list(response.unavailable_services) == []
    document = json.loads(response.json)
    assert document["complete"] is True
    assert document["tables"]["customers"][0]["id"] == customer_id
    for name, stand_in in world.others.items():
        part = document["services"][name]
        assert part["status"] == "OK"
        assert part["document"] == {
            "service": name,
            "customer_id": customer_id,
            "tables": {"x": [1]},
        }
        # Her own token went along, not a token of the customer service: each service
        # decides for itself whether this caller may have this customer's data.
        assert stand_in.calls[-1] == (customer_id, dict(auth)["authorization"])

    staff = bearer(
        world.service.tokens.mint(subject="staff-dpo", kind="staff", scopes=["customers:read"])
    )
    by_staff = await export(world, staff, customer_id)
    assert list(by_staff.unavailable_services) == []
    assert world.others["cart"].calls[-1] == (customer_id, dict(staff)["authorization"])


async def test_a_service_that_is_down_or_too_slow_makes_the_export_partial_and_named(
    world: World,
) -> None:
    customer_id, _, auth = await world.service.register("partial")
    notification = world.others["notification"]
    await notification.server.stop(grace=None)
    world.others["cart"].mode = "stall"
    try:
        response = await export(world, auth)
    finally:
        world.others["cart"].mode = "ok"
    assert sorted(response.unavailable_services) == ["cart", "notification"]
    document = json.loads(response.json)
    assert document["complete"] is False
    assert document["services"]["notification"] == {
        "status": "UNAVAILABLE",
        "reason": "NOTIFICATION_UNAVAILABLE",
    }
    assert document["services"]["cart"] == {"status": "UNAVAILABLE", "reason": "CART_UNAVAILABLE"}
    assert document["services"]["order"]["status"] == "OK"
    # Her own part is all there.
    assert document["tables"]["customers"][0]["id"] == customer_id
    # Back up (the same port): the next export is complete again.
    world.others["notification"] = await start_stand_in("notification", notification.target)
    for _ in range(300):  # up to 60 s: the channel reconnects with backoff
        if not (await export(world, auth)).unavailable_services:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the export stayed partial after the service came back")


async def test_a_service_refusing_the_caller_is_named_as_refused(world: World) -> None:
    _, _, auth = await world.service.register("refused")
    world.others["order"].mode = "refuse"
    try:
        response = await export(world, auth)
    finally:
        world.others["order"].mode = "ok"
    assert list(response.unavailable_services) == ["order"]
    part = json.loads(response.json)["services"]["order"]
    assert part["status"] == "REFUSED"
