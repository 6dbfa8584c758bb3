"""Locations, stock changes, the movement ledger, availability, nearby stores and sourcing over
gRPC against real PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from services.inventory.config import InventorySettings
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost
from tests.services.conftest import Tokens
from tests.services.inventory.conftest import Stub, atp, expect_error, new_sku, receive

Shared = tuple[Stub, ServiceHost[InventorySettings], str]
SHIBUYA_STATION = common_pb2.GeoPoint(latitude=35.6580, longitude=139.7016)


async def ledger_sum(stub: Stub, tokens: Tokens, sku: str, location_id: str) -> int:
    total, token = 0, ""
    while True:
        page = await stub.ListMovements(
            api.ListMovementsRequest(
                sku=sku, location_id=location_id, page_size=2, page_token=token
            ),
            metadata=tokens.staff,
        )
        total += sum(m.quantity for m in page.movements)
        token = page.next_page_token
        if not token:
            return total


async def level(stub: Stub, tokens: Tokens, sku: str, location_id: str) -> pb.StockLevel:
    found = await stub.GetAvailability(
        api.GetAvailabilityRequest(skus=[sku], location_ids=[location_id]), metadata=tokens.staff
    )
    return found.availabilities[0].locations[0]


async def test_demo_network_is_listed_and_paged(shared_inventory: Shared) -> None:
    stub, _, _ = shared_inventory
    first = await stub.ListLocations(api.ListLocationsRequest(page_size=5))
    second = await stub.ListLocations(
        api.ListLocationsRequest(page_size=5, page_token=first.next_page_token)
    )
    ids = [loc.id for loc in [*first.locations, *second.locations]]
    assert len(ids) == 9 and not second.next_page_token
    assert {
        "tokyo-shibuya",
        "tokyo-shinjuku",
        "tokyo-ginza",
        "osaka-umeda",
        "nagoya-sakae",
        "fukuoka-tenjin",
    } <= set(ids)
    stores = await stub.ListLocations(api.ListLocationsRequest(type=pb.LOCATION_TYPE_STORE))
    assert len(stores.locations) == 6
    shibuya = (await stub.GetLocation(api.GetLocationRequest(id="tokyo-shibuya"))).location
    assert abs(shibuya.geo_point.latitude - 35.6595) < 1e-6
    assert pb.CAPABILITY_CLICK_AND_COLLECT in shibuya.capabilities


async def test_location_lifecycle_needs_staff_and_guards_stock(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    new = pb.Location(
        id="yokohama-minatomirai",
        display_name="みなと屋 横浜みなとみらい店",
        type=pb.LOCATION_TYPE_STORE,
        geo_point=common_pb2.GeoPoint(latitude=35.4576, longitude=139.6322),
        capabilities=[pb.CAPABILITY_CLICK_AND_COLLECT],
        priority=50,
    )
    await expect_error(
        stub.CreateLocation(api.CreateLocationRequest(location=new)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_error(
        stub.CreateLocation(api.CreateLocationRequest(location=new), metadata=tokens.customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    created = (
        await stub.CreateLocation(
            api.CreateLocationRequest(location=new, request_id="loc-1"), metadata=tokens.staff
        )
    ).location
    again = (
        await stub.CreateLocation(
            api.CreateLocationRequest(location=new, request_id="loc-1"), metadata=tokens.staff
        )
    ).location
    assert again.etag == created.etag
    await expect_error(
        stub.CreateLocation(api.CreateLocationRequest(location=new), metadata=tokens.staff),
        grpc.StatusCode.ALREADY_EXISTS,
        "LOCATION_ALREADY_EXISTS",
    )
    update = pb.Location(id=created.id, priority=5, etag=created.etag)
    updated = (
        await stub.UpdateLocation(
            api.UpdateLocationRequest(
                location=update, update_mask=field_mask_pb2.FieldMask(paths=["priority"])
            ),
            metadata=tokens.staff,
        )
    ).location
    assert (
        updated.priority == 5
        and updated.display_name == created.display_name
        and updated.etag != created.etag
    )
    await expect_error(
        stub.UpdateLocation(
            api.UpdateLocationRequest(
                location=update, update_mask=field_mask_pb2.FieldMask(paths=["priority"])
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    sku = new_sku()
    await receive(stub, tokens, sku, created.id, 1)
    await expect_error(
        stub.DeleteLocation(api.DeleteLocationRequest(id=created.id), metadata=tokens.staff),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LOCATION_HAS_STOCK",
    )
    await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku, location_id=created.id, quantity=-1, reason=pb.MOVEMENT_REASON_DAMAGE
        ),
        metadata=tokens.staff,
    )
    await stub.DeleteLocation(api.DeleteLocationRequest(id=created.id), metadata=tokens.staff)
    await expect_error(
        stub.GetLocation(api.GetLocationRequest(id=created.id)),
        grpc.StatusCode.NOT_FOUND,
        "LOCATION_NOT_FOUND",
    )


async def test_every_change_is_a_movement_and_the_ledger_sums_to_on_hand(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku, store = new_sku(), "osaka-umeda"
    first = await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku,
            location_id=store,
            quantity=12,
            reason=pb.MOVEMENT_REASON_RECEIPT,
            request_id=f"rcv-{sku}",
        ),
        metadata=tokens.staff,
    )
    retry = await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku,
            location_id=store,
            quantity=12,
            reason=pb.MOVEMENT_REASON_RECEIPT,
            request_id=f"rcv-{sku}",
        ),
        metadata=tokens.staff,
    )
    assert retry.movement.id == first.movement.id and retry.stock_level.on_hand == 12
    await expect_error(
        stub.AdjustStock(
            api.AdjustStockRequest(
                sku=sku,
                location_id=store,
                quantity=13,
                reason=pb.MOVEMENT_REASON_RECEIPT,
                request_id=f"rcv-{sku}",
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert first.movement.actor == "staff:staff-merch-1" and first.movement.on_hand_after == 12
    await stub.AdjustStock(
        api.AdjustStockRequest(
            sku=sku, location_id=store, quantity=-2, reason=pb.MOVEMENT_REASON_DAMAGE, note="water"
        ),
        metadata=tokens.staff,
    )
    counted = await stub.SetStockLevel(
        api.SetStockLevelRequest(sku=sku, location_id=store, on_hand=9, safety_stock=2),
        metadata=tokens.staff,
    )
    assert (counted.stock_level.on_hand, counted.stock_level.available_to_promise) == (9, 7)
    transfer = (
        await stub.TransferStock(
            api.TransferStockRequest(
                sku=sku, from_location_id=store, to_location_id="nagoya-sakae", quantity=4
            ),
            metadata=tokens.staff,
        )
    ).transfer
    assert transfer.state == pb.TRANSFER_STATE_IN_TRANSIT
    arriving = await level(stub, tokens, sku, "nagoya-sakae")
    assert (arriving.on_hand, arriving.in_transit, arriving.available_to_promise) == (0, 4, 0)
    await expect_error(
        stub.TransferStock(
            api.TransferStockRequest(
                sku=sku, from_location_id=store, to_location_id="nagoya-sakae", quantity=4
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",  # 5 on hand, 2 of them safety stock
    )
    received = (
        await stub.ReceiveTransfer(
            api.ReceiveTransferRequest(id=transfer.id), metadata=tokens.staff
        )
    ).transfer
    assert received.state == pb.TRANSFER_STATE_RECEIVED
    await stub.ReceiveTransfer(
        api.ReceiveTransferRequest(id=transfer.id), metadata=tokens.staff
    )  # no double count
    arrived = await level(stub, tokens, sku, "nagoya-sakae")
    assert (arrived.on_hand, arrived.in_transit) == (4, 0)
    assert (
        await ledger_sum(stub, tokens, sku, store)
        == (await level(stub, tokens, sku, store)).on_hand
        == 5
    )
    assert await ledger_sum(stub, tokens, sku, "nagoya-sakae") == 4
    movements = await stub.ListMovements(api.ListMovementsRequest(sku=sku), metadata=tokens.staff)
    assert [m.reason for m in movements.movements] == [
        pb.MOVEMENT_REASON_TRANSFER_IN,
        pb.MOVEMENT_REASON_TRANSFER_OUT,
        pb.MOVEMENT_REASON_CYCLE_COUNT,
        pb.MOVEMENT_REASON_DAMAGE,
        pb.MOVEMENT_REASON_RECEIPT,
    ]
    await expect_error(
        stub.ListMovements(api.ListMovementsRequest(sku=sku), metadata=tokens.customer),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_reserved_units_cannot_be_adjusted_away(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku, store = new_sku(), "tokyo-ginza"
    await receive(stub, tokens, sku, store, 3)
    await stub.ReserveStock(
        api.ReserveStockRequest(
            owner="carts/g", lines=[pb.StockLine(sku=sku, quantity=2, location_id=store)]
        ),
        metadata=tokens.staff,
    )
    await expect_error(
        stub.AdjustStock(
            api.AdjustStockRequest(
                sku=sku, location_id=store, quantity=-2, reason=pb.MOVEMENT_REASON_DAMAGE
            ),
            metadata=tokens.staff,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "STOCK_RESERVED",
    )
    await expect_error(
        stub.SetStockLevel(
            api.SetStockLevelRequest(sku=sku, location_id=store, on_hand=1), metadata=tokens.staff
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "STOCK_RESERVED",
    )


async def test_availability_is_public_but_hides_operational_figures(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    await receive(stub, tokens, sku, "tokyo-shibuya", 4)
    await receive(stub, tokens, sku, "dc-kanto", 40)
    anonymous = (
        await stub.GetAvailability(api.GetAvailabilityRequest(skus=[sku, "NOPE-1"]))
    ).availabilities
    assert [a.sku for a in anonymous] == [sku, "NOPE-1"]
    assert (
        anonymous[0].network_available_to_promise == 44
        and anonymous[1].network_available_to_promise == 0
    )
    assert {
        lv.location_id: (lv.available_to_promise, lv.on_hand) for lv in anonymous[0].locations
    } == {
        "dc-kanto": (40, 0),
        "tokyo-shibuya": (4, 0),
    }
    staff = (
        await stub.GetAvailability(api.GetAvailabilityRequest(skus=[sku]), metadata=tokens.staff)
    ).availabilities
    assert {lv.on_hand for lv in staff[0].locations} == {4, 40}
    await expect_error(
        stub.GetAvailability(api.GetAvailabilityRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SKUS_REQUIRED",
    )


async def test_nearby_stores_with_real_coordinates(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    sku = new_sku()
    for store, quantity in [
        ("tokyo-shibuya", 1),
        ("tokyo-shinjuku", 5),
        ("tokyo-ginza", 5),
        ("osaka-umeda", 9),
    ]:
        await receive(stub, tokens, sku, store, quantity)
    near = await stub.FindNearbyAvailability(
        api.FindNearbyAvailabilityRequest(
            point=SHIBUYA_STATION, radius_km=10, lines=[pb.StockLine(sku=sku, quantity=1)]
        )
    )
    found = [(n.location.id, round(n.distance_km, 1)) for n in near.locations]
    # Shibuya ~0.2 km, Shinjuku ~3.7 km, Ginza ~6.4 km from Shibuya station; Umeda is 400 km.
    assert [loc for loc, _ in found] == ["tokyo-shibuya", "tokyo-shinjuku", "tokyo-ginza"]
    assert found[0][1] < 0.5 and 3 < found[1][1] < 4.5 and 5.5 < found[2][1] < 7.5
    two = await stub.FindNearbyAvailability(
        api.FindNearbyAvailabilityRequest(
            point=SHIBUYA_STATION, radius_km=5, lines=[pb.StockLine(sku=sku, quantity=2)]
        )
    )
    assert [n.location.id for n in two.locations] == ["tokyo-shinjuku"]
    assert two.locations[0].available[0].quantity == 5
    osaka = await stub.FindNearbyAvailability(
        api.FindNearbyAvailabilityRequest(
            point=common_pb2.GeoPoint(latitude=34.7025, longitude=135.4959),
            radius_km=50,
            lines=[pb.StockLine(sku=sku, quantity=1)],
            click_and_collect_only=True,
        )
    )
    assert [n.location.id for n in osaka.locations] == ["osaka-umeda"]


async def test_plan_fulfillment_over_the_api(shared_inventory: Shared, tokens: Tokens) -> None:
    stub, _, _ = shared_inventory
    a, b = new_sku("PA"), new_sku("PB")
    await receive(stub, tokens, a, "tokyo-ginza", 1)
    await receive(stub, tokens, a, "tokyo-shibuya", 3)
    await receive(stub, tokens, b, "tokyo-shibuya", 3)
    await receive(stub, tokens, a, "dc-kanto", 50)
    await receive(stub, tokens, b, "dc-kanto", 50)
    pickup = (
        await stub.PlanFulfillment(
            api.PlanFulfillmentRequest(
                lines=[pb.StockLine(sku=a, quantity=2), pb.StockLine(sku=b, quantity=1)],
                pickup_location_id="tokyo-ginza",
            )
        )
    ).plan
    assert pickup.complete
    assert sorted(
        (x.location_id, x.sku, x.quantity, x.method) for x in pickup.allocations
    ) == sorted(
        [
            ("tokyo-ginza", a, 1, pb.ALLOCATION_METHOD_PICKUP),
            ("tokyo-shibuya", a, 1, pb.ALLOCATION_METHOD_TRANSFER_TO_PICKUP),
            ("tokyo-shibuya", b, 1, pb.ALLOCATION_METHOD_TRANSFER_TO_PICKUP),
        ]
    )
    assert pickup.explanation and all(x.reason for x in pickup.allocations)
    delivery = (
        await stub.PlanFulfillment(
            api.PlanFulfillmentRequest(
                lines=[pb.StockLine(sku=a, quantity=5), pb.StockLine(sku=b, quantity=5)],
                delivery_point=common_pb2.GeoPoint(latitude=35.6812, longitude=139.7671),
            )
        )
    ).plan
    # Shibuya ships and is nearer, but holds only 3: the DC sends all in one parcel.
    assert delivery.shipment_count == 1 and {x.location_id for x in delivery.allocations} == {
        "dc-kanto"
    }
    await expect_error(
        stub.PlanFulfillment(api.PlanFulfillmentRequest(lines=[pb.StockLine(sku=a, quantity=1)])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "DESTINATION_REQUIRED",
    )
    assert await atp(stub, a, "tokyo-ginza") == 1  # planning reserves nothing


async def test_permission_is_checked_before_validation(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    incomplete = api.CreateLocationRequest(location=pb.Location(id="Not An Id"))
    for metadata, code, reason in [
        ((), grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_REQUIRED"),
        (tokens.customer, grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (tokens.device("KIOSK"), grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED"),
        (tokens.staff_without_scope, grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
    ]:
        await expect_error(stub.CreateLocation(incomplete, metadata=metadata), code, reason)
    await expect_error(
        stub.CreateLocation(incomplete, metadata=tokens.staff), grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_update_location_reads_the_mask_as_aip_134(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    stub, _, _ = shared_inventory
    created = (
        await stub.CreateLocation(
            api.CreateLocationRequest(
                location=pb.Location(
                    id="kobe-sannomiya",
                    display_name="みなと屋 神戸三宮店",
                    type=pb.LOCATION_TYPE_STORE,
                    geo_point=common_pb2.GeoPoint(latitude=34.6946, longitude=135.1955),
                    capabilities=[pb.CAPABILITY_CLICK_AND_COLLECT],
                    priority=50,
                    low_stock_threshold=3,
                )
            ),
            metadata=tokens.staff,
        )
    ).location

    async def update(location: pb.Location, *paths: str) -> pb.Location:
        mask = field_mask_pb2.FieldMask(paths=list(paths))
        return (
            await stub.UpdateLocation(
                api.UpdateLocationRequest(location=location, update_mask=mask),
                metadata=tokens.staff,
            )
        ).location

    # No mask: only the fields the request sets change; the rest is kept.
    renamed = await update(pb.Location(id=created.id, display_name="神戸三宮店", etag=created.etag))
    assert renamed.display_name == "神戸三宮店"
    assert (renamed.priority, renamed.low_stock_threshold) == (50, 3)
    assert list(renamed.capabilities) == [pb.CAPABILITY_CLICK_AND_COLLECT]
    # A named path changes that field even to its zero value.
    cleared = await update(pb.Location(id=created.id, etag=renamed.etag), "low_stock_threshold")
    assert (cleared.low_stock_threshold, cleared.display_name) == (0, "神戸三宮店")
    # "*" replaces every updatable field; the type must then be given.
    await expect_error(
        update(pb.Location(id=created.id, display_name="x", etag=cleared.etag), "*"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LOCATION_TYPE_INVALID",
    )
    replaced = await update(
        pb.Location(
            id=created.id,
            display_name="三宮",
            type=pb.LOCATION_TYPE_STORE,
            geo_point=created.geo_point,
            etag=cleared.etag,
        ),
        "*",
    )
    assert (replaced.display_name, replaced.priority, list(replaced.capabilities)) == (
        "三宮",
        0,
        [],
    )
    # Nothing named and nothing set, or an unknown path: refused, nothing changes.
    for location, paths in (
        (pb.Location(id=created.id, etag=replaced.etag), ()),
        (pb.Location(id=created.id, priority=9, etag=replaced.etag), ("priority", "etag")),
    ):
        await expect_error(
            update(location, *paths), grpc.StatusCode.INVALID_ARGUMENT, "UPDATE_MASK_INVALID"
        )
    after = (await stub.GetLocation(api.GetLocationRequest(id=created.id))).location
    assert after.etag == replaced.etag and after.priority == 0


async def test_a_locations_address_and_time_zone_are_bounded(
    shared_inventory: Shared, tokens: Tokens
) -> None:
    # Found from outside: UpdateLocation stored a 200,000-character postal code and time
    # zone (the gateway's body limit is 1 MB, a direct call's is gRPC's 4 MB).
    stub, _, _ = shared_inventory
    before = (await stub.GetLocation(api.GetLocationRequest(id="tokyo-ginza"))).location
    huge = "1" * 200_000
    for location, field in [
        (
            pb.Location(id="tokyo-ginza", address=common_pb2.PostalAddress(postal_code=huge)),
            "location.address.postal_code",
        ),
        (
            pb.Location(id="tokyo-ginza", address=common_pb2.PostalAddress(locality=huge)),
            "location.address.locality",
        ),
        (
            pb.Location(id="tokyo-ginza", address=common_pb2.PostalAddress(address_lines=[huge])),
            "location.address.address_lines[0]",
        ),
        (
            pb.Location(
                id="tokyo-ginza", address=common_pb2.PostalAddress(address_lines=["x"] * 50)
            ),
            "location.address.address_lines",
        ),
        (pb.Location(id="tokyo-ginza", time_zone="A" * 200_000), "location.time_zone"),
    ]:
        mask = "time_zone" if field == "location.time_zone" else "address"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateLocation(
                api.UpdateLocationRequest(
                    location=location, update_mask=field_mask_pb2.FieldMask(paths=[mask])
                ),
                metadata=tokens.staff,
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
        assert [v.field for v in decode_error(caught.value).field_violations] == [field]
    after = (await stub.GetLocation(api.GetLocationRequest(id="tokyo-ginza"))).location
    assert after.etag == before.etag  # nothing changed
