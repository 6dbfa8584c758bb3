"""ReserveStock's request_ids under concurrency, through two replicas on real PostgreSQL:
identical retries racing another body with the same request_id get the winner's answer,
and a request_id is bound to its caller (another caller's replay never receives it)."""

from __future__ import annotations

import asyncio

import grpc

from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.grpc_errors import decode_error
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, atp, new_sku, receive

STORE = "tokyo-shinjuku"


async def outcome(call: object) -> str:
    """The reservation id, or the error's code and reason."""
    try:
        reply = await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return f"{error.code().name} {decode_error(error).reason}"
    return str(reply.reservation.id)


async def test_identical_retries_racing_another_body_receive_the_winners_answer(
    replicas: list[Stub], tokens: Tokens
) -> None:
    sku = new_sku("RACE")
    await receive(replicas[0], tokens, sku, STORE, 100)
    bodies = [
        api.ReserveStockRequest(
            owner=f"orders/{name}",
            lines=[pb.StockLine(sku=sku, quantity=quantity, location_id=STORE)],
            request_id=f"race-{sku}",
        )
        for name, quantity in (("one", 1), ("two", 2))
    ]
    answers = await asyncio.gather(
        *(
            outcome(replicas[n % 2].ReserveStock(bodies[(n // 2) % 2], metadata=tokens.staff))
            for n in range(60)
        )
    )
    ids = {a for a in answers if not a.startswith(("INVALID_ARGUMENT", "ABORTED"))}
    assert len(ids) == 1  # one reservation, whichever body won
    (winner_id,) = ids
    won = [n for n, a in enumerate(answers) if a == winner_id]
    winner = (won[0] // 2) % 2
    for n, answer in enumerate(answers):
        if (n // 2) % 2 == winner:
            assert answer == winner_id, n  # an identical retry gets the winner's answer
        else:
            assert answer == "INVALID_ARGUMENT REQUEST_ID_REUSED", n
    assert await atp(replicas[0], sku, STORE) == 100 - (1, 2)[winner]


async def test_a_request_id_is_bound_to_its_caller(replicas: list[Stub], tokens: Tokens) -> None:
    sku = new_sku("MINE")
    await receive(replicas[0], tokens, sku, STORE, 100)
    request_id = f"shared-{sku}"

    def customer(subject: str) -> tuple[tuple[str, str], ...]:
        return tokens.metadata(tokens.mint(subject=subject, kind="customer", channel="APP"))

    def reserve(owner: str) -> api.ReserveStockRequest:
        return api.ReserveStockRequest(
            owner=owner,
            lines=[pb.StockLine(sku=sku, quantity=1, location_id=STORE)],
            request_id=request_id,
        )

    alice, bob = customer("alice"), customer("bob")
    staff_two = tokens.metadata(
        tokens.mint(subject="staff-two", kind="staff", scopes=["inventory:write"])
    )
    calls = [
        *(
            replicas[n % 2].ReserveStock(reserve("customers/alice"), metadata=alice)
            for n in range(8)
        ),
        *(replicas[n % 2].ReserveStock(reserve("customers/bob"), metadata=bob) for n in range(8)),
        # Bob replaying Alice's very request (body and request_id).
        *(replicas[n % 2].ReserveStock(reserve("customers/alice"), metadata=bob) for n in range(4)),
        # Two staff members sending the same body with the same request_id.
        *(
            replicas[n % 2].ReserveStock(reserve("carts/x"), metadata=tokens.staff)
            for n in range(4)
        ),
        *(replicas[n % 2].ReserveStock(reserve("carts/x"), metadata=staff_two) for n in range(4)),
    ]
    answers = await asyncio.gather(*(outcome(c) for c in calls))
    alices, bobs, replayed = set(answers[:8]), set(answers[8:16]), set(answers[16:20])
    staff_ones, staff_twos = set(answers[20:24]), set(answers[24:28])
    assert len(alices) == len(bobs) == len(staff_ones) == len(staff_twos) == 1
    assert len(alices | bobs | staff_ones | staff_twos) == 4  # four callers, four holds
    assert replayed == {"PERMISSION_DENIED OWNER_NOT_ALLOWED"}  # never Alice's reservation
    (bobs_id,) = bobs
    found = await replicas[0].GetReservation(api.GetReservationRequest(id=bobs_id), metadata=bob)
    assert (found.reservation.customer_id, found.reservation.owner) == ("bob", "customers/bob")
    assert await atp(replicas[0], sku, STORE) == 96


async def test_a_request_id_with_a_nul_is_invalid_and_reserves_nothing(
    replicas: list[Stub], tokens: Tokens
) -> None:
    # Found from outside: the NUL reached PostgreSQL inside the reservation batcher, which
    # answered UNAVAILABLE ("retry") for a request that can never succeed.
    sku = new_sku("NUL")
    await receive(replicas[0], tokens, sku, STORE, 10)
    request = api.ReserveStockRequest(
        owner="orders/nul",
        lines=[pb.StockLine(sku=sku, quantity=1, location_id=STORE)],
        request_id="nul\x00id",
    )
    answer = await outcome(replicas[0].ReserveStock(request, metadata=tokens.staff))
    assert answer == "INVALID_ARGUMENT REQUEST_ID_INVALID"
    assert await atp(replicas[0], sku, STORE) == 10
