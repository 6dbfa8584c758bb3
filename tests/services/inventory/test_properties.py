"""Property-based: random sequences of stock operations through the API keep every invariant
and agree with a simple model (on hand, reserved, safety stock, in transit per level)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.inventory.config import InventorySettings
from services.inventory.store import ReservationStore, StockStore
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.db import Database
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, new_sku

Shared = tuple[Stub, ServiceHost[InventorySettings], str]
LOCATIONS = ["dc-kanto", "tokyo-shibuya"]  # both may ship: "anywhere" chooses between them

sku_index = st.integers(0, 1)
location_index = st.integers(0, 1)
operation = st.one_of(
    st.tuples(st.just("receive"), sku_index, location_index, st.integers(1, 6)),
    st.tuples(st.just("damage"), sku_index, location_index, st.integers(1, 4)),
    st.tuples(st.just("count"), sku_index, location_index, st.integers(0, 8)),
    st.tuples(st.just("safety"), sku_index, location_index, st.integers(0, 3)),
    st.tuples(
        st.just("reserve"),
        st.lists(
            st.tuples(sku_index, st.integers(-1, 1), st.integers(1, 4)), min_size=1, max_size=3
        ),
    ),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("commit"), st.integers(0, 5)),
    st.tuples(st.just("transfer"), sku_index, location_index, st.integers(1, 3)),
    st.tuples(st.just("arrive"), st.integers(0, 5)),
)


@dataclass
class Level:
    on_hand: int = 0
    reserved: int = 0
    safety: int = 0
    in_transit: int = 0

    @property
    def atp(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety)


@dataclass
class Model:
    skus: list[str]
    levels: dict[tuple[str, str], Level] = field(default_factory=dict)
    active: list[pb.Reservation] = field(default_factory=list)
    transit: list[pb.Transfer] = field(default_factory=list)

    def at(self, sku: str, location: str) -> Level:
        return self.levels.setdefault((sku, location), Level())


def _fits(model: Model, lines: list[tuple[str, str, int]]) -> bool:
    """Would the model accept these (merged) lines? Placed lines first, then anywhere lines
    from the stock that remains at any location."""
    left = {key: level.atp for key, level in model.levels.items()}
    for sku, location, quantity in lines:
        if location:
            if left.get((sku, location), 0) < quantity:
                return False
            left[(sku, location)] -= quantity
    for sku, location, quantity in lines:
        if not location and sum(left.get((sku, loc), 0) for loc in LOCATIONS) < quantity:
            return False
    return True


async def _apply(stub: Stub, tokens: Tokens, model: Model, step: tuple) -> None:  # type: ignore[type-arg]
    try:
        await _attempt(stub, tokens, model, step)
    except grpc.aio.AioRpcError as error:
        refused = error
    else:
        return
    _model_agrees_it_was_refused(model, step, refused)


async def _attempt(stub: Stub, tokens: Tokens, model: Model, step: tuple) -> None:  # type: ignore[type-arg]
    """Run the step; on success, check the model allowed it and update the model."""
    staff = tokens.staff
    kind = step[0]
    if kind in ("receive", "damage"):
        sku, location, quantity = model.skus[step[1]], LOCATIONS[step[2]], step[3]
        level = model.at(sku, location)
        ok = kind == "receive" or level.on_hand - quantity >= level.reserved
        reason = pb.MOVEMENT_REASON_RECEIPT if kind == "receive" else pb.MOVEMENT_REASON_DAMAGE
        await stub.AdjustStock(
            api.AdjustStockRequest(
                sku=sku,
                location_id=location,
                quantity=quantity if kind == "receive" else -quantity,
                reason=reason,
            ),
            metadata=staff,
        )
        assert ok
        level.on_hand += quantity if kind == "receive" else -quantity
    elif kind in ("count", "safety"):
        sku, location, value = model.skus[step[1]], LOCATIONS[step[2]], step[3]
        level = model.at(sku, location)
        ok = kind == "safety" or value >= level.reserved
        request = api.SetStockLevelRequest(sku=sku, location_id=location)
        if kind == "count":
            request.on_hand = value
        else:
            request.safety_stock = value
        await stub.SetStockLevel(request, metadata=staff)
        assert ok
        if kind == "count":
            level.on_hand = value
        else:
            level.safety = value
    elif kind == "reserve":
        merged: dict[tuple[str, str], int] = {}
        for sku_i, location_i, quantity in step[1]:
            key = (model.skus[sku_i], LOCATIONS[location_i] if location_i >= 0 else "")
            merged[key] = merged.get(key, 0) + quantity
        lines = [(sku, location, quantity) for (sku, location), quantity in merged.items()]
        ok = _fits(model, lines)
        reply = await stub.ReserveStock(
            api.ReserveStockRequest(
                owner="carts/prop",
                lines=[pb.StockLine(sku=s, location_id=loc, quantity=q) for s, loc, q in lines],
                ttl=Duration(seconds=3600),
            ),
            metadata=staff,
        )
        assert ok, "the service reserved what the model could not"
        for line in reply.reservation.lines:
            assert line.location_id in LOCATIONS
            model.at(line.sku, line.location_id).reserved += line.quantity
        model.active.append(reply.reservation)
    elif kind in ("release", "commit"):
        if not model.active:
            return
        reservation = model.active.pop(step[1] % len(model.active))
        if kind == "release":
            await stub.ReleaseReservation(
                api.ReleaseReservationRequest(id=reservation.id), metadata=staff
            )
        else:
            await stub.CommitReservation(
                api.CommitReservationRequest(id=reservation.id), metadata=staff
            )
        for line in reservation.lines:
            level = model.at(line.sku, line.location_id)
            level.reserved -= line.quantity
            if kind == "commit":
                level.on_hand -= line.quantity
    elif kind == "transfer":
        sku, source, quantity = model.skus[step[1]], LOCATIONS[step[2]], step[3]
        target = LOCATIONS[1 - step[2]]
        ok = model.at(sku, source).atp >= quantity
        reply = await stub.TransferStock(
            api.TransferStockRequest(
                sku=sku, from_location_id=source, to_location_id=target, quantity=quantity
            ),
            metadata=staff,
        )
        assert ok
        model.at(sku, source).on_hand -= quantity
        model.at(sku, target).in_transit += quantity
        model.transit.append(reply.transfer)
    elif kind == "arrive":
        if not model.transit:
            return
        transfer = model.transit.pop(step[1] % len(model.transit))
        await stub.ReceiveTransfer(api.ReceiveTransferRequest(id=transfer.id), metadata=staff)
        level = model.at(transfer.sku, transfer.to_location_id)
        level.in_transit -= transfer.quantity
        level.on_hand += transfer.quantity


def _model_agrees_it_was_refused(model: Model, step: tuple, error: grpc.aio.AioRpcError) -> None:  # type: ignore[type-arg]
    kind = step[0]
    reason = decode_error(error).reason
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, (step, error.details())
    assert reason in {"INSUFFICIENT_STOCK", "STOCK_RESERVED", "INSUFFICIENT_ON_HAND"}, reason
    # The model must agree that this step was impossible.
    if kind == "reserve":
        merged2: dict[tuple[str, str], int] = {}
        for sku_i, location_i, quantity in step[1]:
            key = (model.skus[sku_i], LOCATIONS[location_i] if location_i >= 0 else "")
            merged2[key] = merged2.get(key, 0) + quantity
        assert not _fits(model, [(s, loc, q) for (s, loc), q in merged2.items()]), step
    elif kind in ("receive", "damage"):
        level = model.at(model.skus[step[1]], LOCATIONS[step[2]])
        assert kind == "damage" and level.on_hand - step[3] < level.reserved, step
    elif kind == "count":
        assert step[3] < model.at(model.skus[step[1]], LOCATIONS[step[2]]).reserved, step
    elif kind == "transfer":
        assert model.at(model.skus[step[1]], LOCATIONS[step[2]]).atp < step[3], step
    else:
        raise


async def _check(stub: Stub, tokens: Tokens, model: Model, database_url: str) -> None:
    found = await stub.GetAvailability(
        api.GetAvailabilityRequest(skus=model.skus, location_ids=LOCATIONS), metadata=tokens.staff
    )
    seen = {(lv.sku, lv.location_id): lv for a in found.availabilities for lv in a.locations}
    for key, expected in model.levels.items():
        level = seen.get(key)
        actual = (
            (level.on_hand, level.reserved, level.safety_stock, level.in_transit)
            if level
            else (0, 0, 0, 0)
        )
        assert actual == (
            expected.on_hand,
            expected.reserved,
            expected.safety,
            expected.in_transit,
        ), key
        assert (level.available_to_promise if level else 0) == expected.atp
    keys = list(seen)
    if not keys:
        return
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        async with db.unit_of_work() as uow:
            ledger = await StockStore(uow.session).ledger_sums(keys)
            reserved = await ReservationStore(uow.session).active_reserved(keys)
    finally:
        await db.dispose()
    for key, level in seen.items():
        assert ledger.get(key, 0) == level.on_hand, ("ledger", key)
        assert reserved.get(key, 0) == level.reserved, ("reservations", key)
        assert 0 <= level.reserved <= level.on_hand


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(operation, min_size=1, max_size=25))
async def test_random_operation_sequences_keep_the_invariants(
    shared_inventory: Shared,
    tokens: Tokens,
    steps: list[tuple],  # type: ignore[type-arg]
) -> None:
    stub, _, database_url = shared_inventory
    model = Model([new_sku("P"), new_sku("Q")])
    for step in steps:
        await _apply(stub, tokens, model, step)
    await _check(stub, tokens, model, database_url)
