"""InventoryService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc.aio import ServicerContext

from services.inventory import convert
from services.inventory import domain as d
from services.inventory.usecases import Inventory, sees_details
from services.inventory.watch import AvailabilityHub
from tenpo.inventory.v1 import inventory_service_pb2 as api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as api_grpc
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit import wire
from tenpo.kit.auth import current_principal
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.idempotency import request_fingerprint
from tenpo.kit.pagination import PageTokenCodec, page_size

#: update_mask path -> domain field.
MASKABLE_FIELDS = {
    "display_name": "display_name",
    "type": "type",
    "address": "address",
    "geo_point": "geo_point",
    "time_zone": "time_zone",
    "priority": "priority",
    "capabilities": "capabilities",
    "low_stock_threshold": "low_stock_threshold",
    "ship_from_store_capacity": "ship_from_store_capacity",
    "same_day_capacity": "same_day_capacity",
    "same_day_radius_km": "same_day_radius_km",
}
#: update_mask path of a sourcing profile version -> field of its rules.
PROFILE_FIELDS = {
    "description": "description",
    "criteria": "criteria",
    "max_shipments": "max_shipments",
    "allowed_location_types": "allowed_types",
    "fallbacks": "fallbacks",
}


def _location_type(value: int) -> d.LocationType | None:
    if value == pb.LOCATION_TYPE_UNSPECIFIED:
        return None
    try:
        return d.LocationType(value)
    except ValueError:
        raise InvalidArgument(
            "unknown location type",
            reason="LOCATION_TYPE_INVALID",
            field_violations=[FieldViolation("type", "unknown")],
        ) from None


def _reason(value: int) -> d.MovementReason:
    try:
        return d.MovementReason(value)
    except ValueError:
        raise d.invalid("reason", "required", "REASON_INVALID") from None


class InventoryServicer(api_grpc.InventoryServiceServicer):
    def __init__(
        self,
        inventory: Inventory,
        hub: AvailabilityHub,
        page_tokens: PageTokenCodec,
        *,
        watch_max_seconds: float,
    ) -> None:
        self.inventory = inventory
        self.hub = hub
        self.page_tokens = page_tokens
        self.watch_max_seconds = watch_max_seconds

    # ---------------------------------------------------------------------- locations

    async def GetLocation(
        self, request: api.GetLocationRequest, context: ServicerContext
    ) -> api.GetLocationResponse:
        d.check_location_id(request.id, "id")
        location = await self.inventory.locations.get(request.id)
        return api.GetLocationResponse(location=convert.location(location))

    async def ListLocations(
        self, request: api.ListLocationsRequest, context: ServicerContext
    ) -> api.ListLocationsResponse:
        size = page_size(request.page_size, default=100, maximum=500)
        location_type = _location_type(request.type)
        shape = {"t": int(location_type or 0)}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.inventory.locations.list(
            type=location_type, after=str(cursor.get("a", "")), limit=size + 1
        )
        response = api.ListLocationsResponse(
            locations=[convert.location(loc) for loc in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"a": found[size - 1].id}, query=shape
            )
        return response

    async def CreateLocation(
        self, request: api.CreateLocationRequest, context: ServicerContext
    ) -> api.CreateLocationResponse:
        location = convert.location_from_pb(request.location)
        created = await self.inventory.locations.create(
            current_principal(), location, request_id=request.request_id, request=request
        )
        return api.CreateLocationResponse(location=convert.location(created))

    async def UpdateLocation(
        self, request: api.UpdateLocationRequest, context: ServicerContext
    ) -> api.UpdateLocationResponse:
        d.check_location_id(request.location.id, "location.id")
        # AIP-134: named paths, "*" for all, or (no mask) the fields the request sets.
        paths = update_paths(request.update_mask.paths, request.location, MASKABLE_FIELDS)
        given = request.location
        if not given.type:
            # The type only matters when the mask names it; fill it so parsing succeeds.
            given = pb.Location()
            given.CopyFrom(request.location)
            given.type = pb.LOCATION_TYPE_STORE
        parsed = convert.location_from_pb(given)
        changes = {MASKABLE_FIELDS[p]: getattr(parsed, MASKABLE_FIELDS[p]) for p in paths}
        if "type" in paths and not request.location.type:
            raise d.invalid("location.type", "required", "LOCATION_TYPE_INVALID")
        updated = await self.inventory.locations.update(
            current_principal(), request.location.id, changes, etag=request.location.etag
        )
        return api.UpdateLocationResponse(location=convert.location(updated))

    async def DeleteLocation(
        self, request: api.DeleteLocationRequest, context: ServicerContext
    ) -> api.DeleteLocationResponse:
        d.check_location_id(request.id, "id")
        await self.inventory.locations.delete(current_principal(), request.id, request.etag)
        return api.DeleteLocationResponse()

    # ------------------------------------------------------------------- availability

    async def GetAvailability(
        self, request: api.GetAvailabilityRequest, context: ServicerContext
    ) -> api.GetAvailabilityResponse:
        detailed = sees_details(current_principal())
        found = await self.inventory.stock.get_availability(
            list(request.skus), list(request.location_ids)
        )
        return api.GetAvailabilityResponse(
            availabilities=[
                pb.SkuAvailability(
                    sku=sku,
                    network_available_to_promise=sum(lv.available_to_promise for lv in levels),
                    locations=[convert.stock_level(lv, detailed=detailed) for lv in levels],
                )
                for sku, levels in found
            ]
        )

    async def FindNearbyAvailability(
        self, request: api.FindNearbyAvailabilityRequest, context: ServicerContext
    ) -> api.FindNearbyAvailabilityResponse:
        if not request.HasField("point"):
            raise d.invalid("point", "required", "POINT_REQUIRED")
        lines = (
            d.normalize_lines([d.Line(m.sku, m.quantity) for m in request.lines])
            if request.lines
            else []
        )
        found = await self.inventory.stock.find_nearby(
            convert.geo_point(request.point),
            wire.finite(request.radius_km, "radius_km"),
            lines,
            click_and_collect_only=request.click_and_collect_only,
            limit=page_size(request.page_size, default=10, maximum=100),
        )
        return api.FindNearbyAvailabilityResponse(
            locations=[
                pb.NearbyLocation(
                    location=convert.location(location),
                    distance_km=round(distance, 3),
                    available=[pb.StockLine(sku=s, quantity=q) for s, q in atp.items()],
                )
                for location, distance, atp in found
            ]
        )

    async def ListStockLevels(
        self, request: api.ListStockLevelsRequest, context: ServicerContext
    ) -> api.ListStockLevelsResponse:
        size = page_size(request.page_size, default=100, maximum=1000)
        shape = {"l": request.location_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.inventory.stock.list_levels(
            current_principal(), request.location_id, str(cursor.get("a", "")), size + 1
        )
        response = api.ListStockLevelsResponse(
            stock_levels=[convert.stock_level(level) for level in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"a": found[size - 1].sku}, query=shape
            )
        return response

    async def AdjustStock(
        self, request: api.AdjustStockRequest, context: ServicerContext
    ) -> api.AdjustStockResponse:
        level, movement = await self.inventory.stock.adjust(
            current_principal(),
            sku=request.sku,
            location_id=request.location_id,
            quantity=request.quantity,
            reason=_reason(request.reason),
            note=request.note,
            request_id=request.request_id,
            request=request,
        )
        return api.AdjustStockResponse(
            stock_level=convert.stock_level(level), movement=convert.movement(movement)
        )

    async def SetStockLevel(
        self, request: api.SetStockLevelRequest, context: ServicerContext
    ) -> api.SetStockLevelResponse:
        level = await self.inventory.stock.set_level(
            current_principal(),
            sku=request.sku,
            location_id=request.location_id,
            on_hand=request.on_hand if request.HasField("on_hand") else None,
            safety_stock=request.safety_stock if request.HasField("safety_stock") else None,
            note=request.note,
            request_id=request.request_id,
            request=request,
        )
        return api.SetStockLevelResponse(stock_level=convert.stock_level(level))

    async def TransferStock(
        self, request: api.TransferStockRequest, context: ServicerContext
    ) -> api.TransferStockResponse:
        transfer = await self.inventory.transfers.send(
            current_principal(),
            sku=request.sku,
            from_location_id=request.from_location_id,
            to_location_id=request.to_location_id,
            quantity=request.quantity,
            note=request.note,
            request_id=request.request_id,
            request=request,
        )
        return api.TransferStockResponse(transfer=convert.transfer(transfer))

    async def ReceiveTransfer(
        self, request: api.ReceiveTransferRequest, context: ServicerContext
    ) -> api.ReceiveTransferResponse:
        transfer = await self.inventory.transfers.receive(
            current_principal(), convert.parse_id(request.id, "id"), request.request_id
        )
        return api.ReceiveTransferResponse(transfer=convert.transfer(transfer))

    async def ListMovements(
        self, request: api.ListMovementsRequest, context: ServicerContext
    ) -> api.ListMovementsResponse:
        size = page_size(request.page_size, default=100, maximum=1000)
        shape = {"s": request.sku, "l": request.location_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        before: Any = cursor.get("b")
        found = await self.inventory.stock.list_movements(
            current_principal(),
            sku=request.sku,
            location_id=request.location_id,
            before_seq=int(before) if before is not None else None,
            limit=size + 1,
        )
        response = api.ListMovementsResponse(
            movements=[convert.movement(row) for row in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"b": found[size - 1]["seq"]}, query=shape
            )
        return response

    # ------------------------------------------------------------------- reservations

    async def ReserveStock(
        self, request: api.ReserveStockRequest, context: ServicerContext
    ) -> api.ReserveStockResponse:
        reservation = await self.inventory.reservations.reserve(
            current_principal(),
            owner=request.owner,
            lines=convert.lines(request.lines),
            ttl=convert.duration(request.ttl, request.HasField("ttl")),
            request_id=request.request_id,
            fingerprint=request_fingerprint(request),
            near=convert.geo_point(request.near) if request.HasField("near") else None,
        )
        return api.ReserveStockResponse(reservation=convert.reservation(reservation))

    async def GetReservation(
        self, request: api.GetReservationRequest, context: ServicerContext
    ) -> api.GetReservationResponse:
        found = await self.inventory.reservations.get(
            current_principal(), convert.parse_id(request.id, "id")
        )
        return api.GetReservationResponse(reservation=convert.reservation(found))

    async def ExtendReservation(
        self, request: api.ExtendReservationRequest, context: ServicerContext
    ) -> api.ExtendReservationResponse:
        extended = await self.inventory.reservations.extend(
            current_principal(),
            convert.parse_id(request.id, "id"),
            convert.duration(request.ttl, request.HasField("ttl")),
        )
        return api.ExtendReservationResponse(reservation=convert.reservation(extended))

    async def ReleaseReservation(
        self, request: api.ReleaseReservationRequest, context: ServicerContext
    ) -> api.ReleaseReservationResponse:
        released = await self.inventory.reservations.release(
            current_principal(), convert.parse_id(request.id, "id")
        )
        return api.ReleaseReservationResponse(reservation=convert.reservation(released))

    async def CommitReservation(
        self, request: api.CommitReservationRequest, context: ServicerContext
    ) -> api.CommitReservationResponse:
        committed = await self.inventory.reservations.commit(
            current_principal(), convert.parse_id(request.id, "id"), request.request_id
        )
        return api.CommitReservationResponse(reservation=convert.reservation(committed))

    # ----------------------------------------------------------------------- sourcing

    async def PlanFulfillment(
        self, request: api.PlanFulfillmentRequest, context: ServicerContext
    ) -> api.PlanFulfillmentResponse:
        lines = d.normalize_lines([d.Line(m.sku, m.quantity) for m in request.lines])
        plan = await self.inventory.sourcing.plan_fulfillment(
            lines,
            pickup_location_id=request.pickup_location_id,
            delivery_point=(
                convert.geo_point(request.delivery_point)
                if request.HasField("delivery_point")
                else None
            ),
            same_day=request.same_day,
            profile=request.sourcing_profile,
        )
        return api.PlanFulfillmentResponse(plan=convert.plan(plan))

    # -------------------------------------------------------------- sourcing profiles

    async def CreateSourcingProfileVersion(
        self, request: api.CreateSourcingProfileVersionRequest, context: ServicerContext
    ) -> api.CreateSourcingProfileVersionResponse:
        created = await self.inventory.profiles.create_version(
            current_principal(),
            request.profile,
            convert.rules_from_pb(request.version),
            request_id=request.request_id,
            request=request,
        )
        return api.CreateSourcingProfileVersionResponse(version=convert.profile_version(created))

    async def UpdateSourcingProfileVersion(
        self, request: api.UpdateSourcingProfileVersionRequest, context: ServicerContext
    ) -> api.UpdateSourcingProfileVersionResponse:
        # AIP-134: named paths, "*" for all, or (no mask) the fields the request sets.
        paths = update_paths(request.update_mask.paths, request.version, PROFILE_FIELDS)
        parsed = convert.rules_from_pb(request.version)
        updated = await self.inventory.profiles.update_version(
            current_principal(),
            request.version.profile,
            request.version.version,
            {PROFILE_FIELDS[p]: getattr(parsed, PROFILE_FIELDS[p]) for p in paths},
            etag=request.version.etag,
        )
        return api.UpdateSourcingProfileVersionResponse(version=convert.profile_version(updated))

    async def ActivateSourcingProfileVersion(
        self, request: api.ActivateSourcingProfileVersionRequest, context: ServicerContext
    ) -> api.ActivateSourcingProfileVersionResponse:
        activated = await self.inventory.profiles.activate(
            current_principal(), request.profile, request.version, etag=request.etag
        )
        return api.ActivateSourcingProfileVersionResponse(
            version=convert.profile_version(activated)
        )

    async def GetSourcingProfileVersion(
        self, request: api.GetSourcingProfileVersionRequest, context: ServicerContext
    ) -> api.GetSourcingProfileVersionResponse:
        found = await self.inventory.profiles.get(
            current_principal(), request.profile, request.version
        )
        return api.GetSourcingProfileVersionResponse(version=convert.profile_version(found))

    async def ListSourcingProfileVersions(
        self, request: api.ListSourcingProfileVersionsRequest, context: ServicerContext
    ) -> api.ListSourcingProfileVersionsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        shape = {"p": request.profile}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.inventory.profiles.list(
            current_principal(), request.profile, cursor=cursor.get("a"), limit=size + 1
        )
        response = api.ListSourcingProfileVersionsResponse(
            versions=[convert.profile_version(v) for v in found[:size]]
        )
        if len(found) > size:
            last = found[size - 1]
            response.next_page_token = self.page_tokens.encode(
                {"a": last.version if request.profile else last.profile}, query=shape
            )
        return response

    # ------------------------------------------------------------------ live updates

    async def WatchAvailability(
        self, request: api.WatchAvailabilityRequest, context: ServicerContext
    ) -> AsyncIterator[api.WatchAvailabilityResponse]:
        skus = list(dict.fromkeys(request.skus))
        if not skus or len(skus) > 200:
            raise d.invalid("skus", "1-200 SKUs", "SKUS_REQUIRED")
        for i, sku in enumerate(skus):
            d.check_sku(sku, f"skus[{i}]")
        if request.location_id:
            await self.inventory.locations.get(d.check_location_id(request.location_id))
        async for update in self.hub.watch(
            skus, request.location_id, max_seconds=self.watch_max_seconds
        ):
            yield api.WatchAvailabilityResponse(
                kind=(
                    pb.AVAILABILITY_UPDATE_KIND_SNAPSHOT
                    if update.snapshot
                    else pb.AVAILABILITY_UPDATE_KIND_CHANGE
                ),
                sku=update.sku,
                location_id=request.location_id,
                available_to_promise=update.available_to_promise,
                change_time=convert.timestamp(update.at),
            )
