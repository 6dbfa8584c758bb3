"""What a customer may hold by itself: only for owners bound to it, within the per-line,
TTL and active-holds caps (the last one under concurrency, against real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration

from services.inventory import domain as d
from services.inventory.config import InventorySettings
from tenpo.devtools.keys import DevKeys
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.errors import PermissionDenied
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, atp, expect_error, new_sku, receive

STORE = "tokyo-shibuya"
LIMITS = {
    "customer_reservation_max_quantity": 3,
    "customer_reservation_max_ttl_seconds": 600,
    "customer_reservation_max_active": 4,
}


@pytest_asyncio.fixture
async def limited(
    database_url: str, nats_url: str, dev_keys: DevKeys
) -> AsyncIterator[tuple[list[Stub], ServiceHost[InventorySettings]]]:
    """Two replicas on one database with small customer caps, one channel each."""
    from tests.services.inventory.conftest import start_inventory

    async for one in start_inventory(database_url, nats_url, dev_keys, **LIMITS):
        async for two in start_inventory(database_url, nats_url, dev_keys, **LIMITS):
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{one.port}") as a,
                grpc.aio.insecure_channel(f"127.0.0.1:{two.port}") as b,
            ):
                yield [Stub(a), Stub(b)], one


def line(sku: str, quantity: int) -> pb.StockLine:
    return pb.StockLine(sku=sku, quantity=quantity, location_id=STORE)


def customer(tokens: Tokens, subject: str) -> tuple[tuple[str, str], ...]:
    return tokens.metadata(tokens.mint(subject=subject, kind="customer", channel="APP"))


async def test_a_customer_reserves_only_for_owners_bound_to_itself(
    limited: tuple[list[Stub], ServiceHost[InventorySettings]], tokens: Tokens
) -> None:
    (stub, _), _ = limited
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 10)
    alice = customer(tokens, "alice")
    for owner in ("carts/bob-cart", "customers/bob", "customers/alice-impostor", "customers/"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReserveStock(
                api.ReserveStockRequest(owner=owner, lines=[line(sku, 1)]), metadata=alice
            )
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        error = decode_error(caught.value)
        assert error.reason == "OWNER_NOT_ALLOWED"
        assert [v.field for v in error.field_violations] == ["owner"]
    assert await atp(stub, sku, STORE) == 10  # nothing was held
    for owner in ("customers/alice", "customers/alice/carts/1"):
        held = await stub.ReserveStock(
            api.ReserveStockRequest(owner=owner, lines=[line(sku, 1)]), metadata=alice
        )
        assert held.reservation.owner == owner and held.reservation.customer_id == "alice"
    # Staff (and services) name any owner, beyond the customer caps.
    staff = await stub.ReserveStock(
        api.ReserveStockRequest(owner="carts/bob-cart", lines=[line(sku, 5)]),
        metadata=tokens.staff,
    )
    assert staff.reservation.owner == "carts/bob-cart"


async def test_a_customer_holds_at_most_the_capped_quantity_and_time(
    limited: tuple[list[Stub], ServiceHost[InventorySettings]], tokens: Tokens
) -> None:
    (stub, _), _ = limited
    sku, other = new_sku(), new_sku()
    await receive(stub, tokens, sku, STORE, 500)
    await receive(stub, tokens, other, STORE, 500)
    bob = customer(tokens, "bob")
    hoard = api.ReserveStockRequest(
        owner="customers/bob",
        lines=[line(other, 1), line(sku, 500)],
        ttl=Duration(seconds=1_209_600),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReserveStock(hoard, metadata=bob)
    error = decode_error(caught.value)
    assert (caught.value.code(), error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RESERVATION_QUANTITY_LIMIT",
    )
    assert [v.field for v in error.field_violations] == ["lines[1].quantity"]
    too_long = api.ReserveStockRequest(
        owner="customers/bob", lines=[line(sku, 3)], ttl=Duration(seconds=601)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReserveStock(too_long, metadata=bob)
    error = decode_error(caught.value)
    assert error.reason == "RESERVATION_TTL_LIMIT"
    assert [v.field for v in error.field_violations] == ["ttl"]
    assert await atp(stub, sku, STORE) == 500
    held = (
        await stub.ReserveStock(
            api.ReserveStockRequest(owner="customers/bob", lines=[line(sku, 3)]), metadata=bob
        )
    ).reservation
    # Without a ttl a customer gets the default (15 min) capped at its maximum (10 min).
    lasts = held.expire_time.ToDatetime() - held.create_time.ToDatetime()
    assert lasts == timedelta(seconds=600)
    # Extending cannot go past the cap either.
    await expect_error(
        stub.ExtendReservation(
            api.ExtendReservationRequest(id=held.id, ttl=Duration(seconds=601)), metadata=bob
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "RESERVATION_TTL_LIMIT",
    )
    extended = await stub.ExtendReservation(
        api.ExtendReservationRequest(id=held.id, ttl=Duration(seconds=300)), metadata=bob
    )
    assert extended.reservation.state == pb.RESERVATION_STATE_ACTIVE


async def test_a_customer_cannot_renew_a_hold_past_its_cap_from_creation(
    limited: tuple[list[Stub], ServiceHost[InventorySettings]], tokens: Tokens
) -> None:
    # Found from outside: each extension was capped, but a customer could extend again and
    # again, holding stock indefinitely. A customer's hold lives at most the cap from when
    # it was made; staff and services (cart, order) extend as they need.
    (stub, _), _ = limited
    sku = new_sku()
    await receive(stub, tokens, sku, STORE, 10)
    carol = customer(tokens, "carol")
    held = (
        await stub.ReserveStock(
            api.ReserveStockRequest(
                owner="customers/carol", lines=[line(sku, 1)], ttl=Duration(seconds=120)
            ),
            metadata=carol,
        )
    ).reservation
    created = held.create_time.ToDatetime()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExtendReservation(
            api.ExtendReservationRequest(id=held.id, ttl=Duration(seconds=600)), metadata=carol
        )
    error = decode_error(caught.value)
    assert (caught.value.code(), error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "RESERVATION_TTL_LIMIT",
    )
    assert [v.field for v in error.field_violations] == ["ttl"]
    for _ in range(3):  # renewing within the cap, again and again, never passes it
        extended = await stub.ExtendReservation(
            api.ExtendReservationRequest(id=held.id, ttl=Duration(seconds=300)), metadata=carol
        )
        assert extended.reservation.expire_time.ToDatetime() - created <= timedelta(seconds=600)
    staff = await stub.ExtendReservation(
        api.ExtendReservationRequest(id=held.id, ttl=Duration(seconds=3600)),
        metadata=tokens.staff,
    )
    assert staff.reservation.expire_time.ToDatetime() - created > timedelta(seconds=600)


async def test_the_active_holds_cap_holds_under_concurrency_across_replicas(
    limited: tuple[list[Stub], ServiceHost[InventorySettings]], tokens: Tokens
) -> None:
    stubs, _ = limited
    skus = [new_sku() for _ in range(8)]
    for sku in skus:
        await receive(stubs[0], tokens, sku, STORE, 50)
    carol, dave = customer(tokens, "carol"), customer(tokens, "dave")

    async def reserve(who: tuple[tuple[str, str], ...], name: str, n: int) -> str:
        # Different SKUs, so the calls land in different batches and transactions.
        try:
            await stubs[n % 2].ReserveStock(
                api.ReserveStockRequest(
                    owner=f"customers/{name}/carts/{n}", lines=[line(skus[n % len(skus)], 1)]
                ),
                metadata=who,
            )
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} {decode_error(error).reason}"
        return "held"

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(reserve(carol, "carol", n) for n in range(40)),
            *(reserve(dave, "dave", n) for n in range(40)),
        ),
        120,
    )
    limit = LIMITS["customer_reservation_max_active"]
    refused = "RESOURCE_EXHAUSTED TOO_MANY_ACTIVE_RESERVATIONS"
    assert set(outcomes) == {"held", refused}
    assert outcomes[:40].count("held") == limit
    assert outcomes[40:].count("held") == limit
    left = [await atp(stubs[0], sku, STORE) for sku in skus]
    assert sum(left) == 8 * 50 - 2 * limit


def test_the_customer_checks_are_pure_domain_rules() -> None:
    limits = d.CustomerLimits(max_quantity_per_line=2, max_ttl=timedelta(minutes=5))
    ok = [d.Line("S", 2, STORE)]
    d.check_customer_reservation("u1", "customers/u1", ok, timedelta(minutes=5), limits)
    d.check_customer_reservation("u1", "customers/u1/carts/9", ok, timedelta(minutes=1), limits)
    with pytest.raises(PermissionDenied):
        d.check_customer_reservation("u1", "customers/u10", ok, timedelta(minutes=1), limits)
    with pytest.raises(PermissionDenied):
        d.check_customer_reservation("", "customers/", ok, timedelta(minutes=1), limits)
