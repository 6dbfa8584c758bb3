"""No oversell under contention: hundreds of concurrent reservations against real PostgreSQL,
through two replicas of the service sharing one database."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import grpc

from services.inventory.store import ReservationStore, StockStore
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, atp, new_sku, receive


async def _ledger_and_reservations_agree(
    database_url: str, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int]]:
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            stock = StockStore(uow.session)
            levels = {
                lv.key: lv for lv in await stock.levels_for_skus(sorted({k[0] for k in keys}))
            }
            ledger = await stock.ledger_sums(keys)
            reserved = await ReservationStore(uow.session).active_reserved(keys)
    finally:
        await db.dispose()
    for key in keys:
        level = levels[key]
        assert ledger.get(key, 0) == level.on_hand, key
        assert reserved.get(key, 0) == level.reserved, key
        assert 0 <= level.reserved <= level.on_hand, key
    return {k: (levels[k].on_hand, levels[k].reserved) for k in keys}


async def test_500_concurrent_single_unit_reservations_on_50_units(
    replicas: list[Stub], tokens: Tokens, database_url: str
) -> None:
    sku, store = new_sku("HOT"), "tokyo-shibuya"
    await receive(replicas[0], tokens, sku, store, 50)
    metadata = tokens.staff

    async def reserve(i: int) -> str:
        try:
            await replicas[i % 2].ReserveStock(
                api.ReserveStockRequest(
                    owner=f"carts/{i}",
                    lines=[pb.StockLine(sku=sku, quantity=1, location_id=store)],
                    request_id=f"hot-{sku}-{i}",
                ),
                metadata=metadata,
                timeout=60,
            )
            return "OK"
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name}/{decode_error(error).reason}"

    outcomes = Counter(await asyncio.gather(*(reserve(i) for i in range(500))))
    assert outcomes == {"OK": 50, "FAILED_PRECONDITION/INSUFFICIENT_STOCK": 450}
    assert await atp(replicas[1], sku, store) == 0
    state = await _ledger_and_reservations_agree(database_url, [(sku, store)])
    assert state[(sku, store)] == (50, 50)


async def test_mixed_multi_line_reservations_releases_and_commits_never_deadlock(
    replicas: list[Stub], tokens: Tokens, database_url: str
) -> None:
    rng = random.Random(4)
    skus = [new_sku("MIX") for _ in range(5)]
    stores = ["tokyo-shibuya", "tokyo-ginza", "osaka-umeda"]
    keys = [(s, loc) for s in skus for loc in stores]
    for sku, loc in keys:
        await receive(replicas[0], tokens, sku, loc, 30)
    metadata = tokens.staff

    async def shopper(i: int) -> str:
        lines = [
            pb.StockLine(sku=sku, quantity=rng.randint(1, 3), location_id=rng.choice([*stores, ""]))
            for sku in rng.sample(skus, rng.randint(1, 4))
        ]
        stub = replicas[i % 2]
        try:
            reply = await stub.ReserveStock(
                api.ReserveStockRequest(owner=f"carts/mix-{i}", lines=lines),
                metadata=metadata,
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            # Anything but a clean "not enough stock" (a deadlock, a retry) fails the test.
            return (
                "rejected"
                if decode_error(error).reason == "INSUFFICIENT_STOCK"
                else error.details() or "?"
            )
        then = rng.random()
        if then < 0.3:
            await stub.ReleaseReservation(
                api.ReleaseReservationRequest(id=reply.reservation.id), metadata=metadata
            )
            return "released"
        if then < 0.5:
            await stub.CommitReservation(
                api.CommitReservationRequest(id=reply.reservation.id), metadata=metadata
            )
            return "committed"
        return "held"

    outcomes = Counter(
        await asyncio.wait_for(asyncio.gather(*(shopper(i) for i in range(300))), 90)
    )
    assert set(outcomes) == {"rejected", "held", "released", "committed"}, outcomes
    state = await _ledger_and_reservations_agree(database_url, keys)
    # Commits took units off the shelf; every unit is accounted for.
    assert sum(on_hand for on_hand, _ in state.values()) < 30 * len(keys)


async def test_the_same_request_id_through_both_replicas_reserves_once(
    replicas: list[Stub], tokens: Tokens, database_url: str
) -> None:
    sku, store = new_sku("IDEM"), "tokyo-shinjuku"
    await receive(replicas[0], tokens, sku, store, 100)
    requests = [
        api.ReserveStockRequest(
            owner=f"orders/{n}",
            lines=[pb.StockLine(sku=sku, quantity=1, location_id=store)],
            request_id=f"idem-{sku}-{n}",
        )
        for n in range(20)
    ]
    replies = await asyncio.gather(
        *(replicas[i % 2].ReserveStock(requests[i // 4], metadata=tokens.staff) for i in range(80))
    )
    by_request: dict[str, set[str]] = {}
    for i, reply in enumerate(replies):
        by_request.setdefault(requests[i // 4].request_id, set()).add(reply.reservation.id)
    assert all(len(ids) == 1 for ids in by_request.values())
    assert await atp(replicas[0], sku, store) == 80
    state = await _ledger_and_reservations_agree(database_url, [(sku, store)])
    assert state[(sku, store)] == (100, 20)
