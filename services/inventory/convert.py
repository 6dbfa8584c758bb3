"""Proto ⇄ domain translation for inventory (used by the servicer and for event payloads)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

from services.inventory import domain as d
from services.inventory.domain import profiles, sourcing
from tenpo.common.v1 import common_pb2
from tenpo.inventory.v1 import events_pb2
from tenpo.inventory.v1 import resources_pb2 as pb
from tenpo.kit import wire
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.wire import parse_id as parse_id
from tenpo.kit.wire import timestamp as timestamp


def duration(message: Duration, present: bool, path: str = "ttl") -> timedelta | None:
    return wire.from_duration(message, path) if present else None


def geo_point(message: common_pb2.GeoPoint) -> d.GeoPoint:
    return d.GeoPoint(message.latitude, message.longitude)


def geo_point_pb(point: d.GeoPoint) -> common_pb2.GeoPoint:
    return common_pb2.GeoPoint(latitude=point.latitude, longitude=point.longitude)


def location(loc: d.Location) -> pb.Location:
    a = loc.address
    return pb.Location(
        id=loc.id,
        display_name=loc.display_name,
        type=int(loc.type),  # type: ignore[arg-type]
        address=common_pb2.PostalAddress(
            region_code=a.region_code,
            postal_code=a.postal_code,
            administrative_area=a.administrative_area,
            locality=a.locality,
            address_lines=list(a.address_lines),
        ),
        geo_point=geo_point_pb(loc.geo_point),
        time_zone=loc.time_zone,
        priority=loc.priority,
        capabilities=sorted(int(c) for c in loc.capabilities),  # type: ignore[misc]
        low_stock_threshold=loc.low_stock_threshold,
        etag=loc.etag,
        create_time=timestamp(loc.created_at),
        update_time=timestamp(loc.updated_at),
        ship_from_store_capacity=_capacity_pb(loc.ship_from_store_capacity),
        same_day_capacity=_capacity_pb(loc.same_day_capacity),
        same_day_radius_km=loc.same_day_radius_km,
    )


def _capacity_pb(capacity: d.DailyCapacity) -> pb.DailyCapacity | None:
    if not capacity.limited:
        return None
    return pb.DailyCapacity(
        units_per_day=capacity.units_per_day, orders_per_day=capacity.orders_per_day
    )


def _capacity(message: pb.DailyCapacity) -> d.DailyCapacity:
    return d.DailyCapacity(message.units_per_day, message.orders_per_day)


def location_from_pb(message: pb.Location, *, path: str = "location") -> d.Location:
    if message.type not in {t.value for t in d.LocationType}:
        raise InvalidArgument(
            "location type is required",
            reason="LOCATION_TYPE_INVALID",
            field_violations=[FieldViolation(f"{path}.type", "required")],
        )
    capabilities: set[d.Capability] = set()
    for i, value in enumerate(message.capabilities):
        try:
            capabilities.add(d.Capability(value))
        except ValueError:
            raise InvalidArgument(
                "unknown capability",
                reason="CAPABILITY_INVALID",
                field_violations=[FieldViolation(f"{path}.capabilities[{i}]", "unknown")],
            ) from None
    a = message.address
    return d.Location(
        id=message.id,
        display_name=message.display_name,
        type=d.LocationType(message.type),
        geo_point=geo_point(message.geo_point),
        address=d.Address(
            region_code=a.region_code,
            postal_code=a.postal_code,
            administrative_area=a.administrative_area,
            locality=a.locality,
            address_lines=tuple(a.address_lines),
        ),
        time_zone=message.time_zone or "Asia/Tokyo",
        priority=message.priority,
        capabilities=frozenset(capabilities),
        low_stock_threshold=message.low_stock_threshold,
        ship_from_store_capacity=_capacity(message.ship_from_store_capacity),
        same_day_capacity=_capacity(message.same_day_capacity),
        same_day_radius_km=wire.finite(message.same_day_radius_km, f"{path}.same_day_radius_km"),
    )


def stock_level(level: d.StockLevel, *, detailed: bool = True) -> pb.StockLevel:
    message = pb.StockLevel(
        sku=level.sku,
        location_id=level.location_id,
        safety_stock=level.safety_stock,
        available_to_promise=level.available_to_promise,
        version=level.version,
        update_time=timestamp(level.updated_at),
    )
    if detailed:
        message.on_hand = level.on_hand
        message.reserved = level.reserved
        message.in_transit = level.in_transit
    return message


def movement(row: Mapping[str, Any]) -> pb.Movement:
    return pb.Movement(
        id=str(row["id"]),
        sku=row["sku"],
        location_id=row["location_id"],
        quantity=row["quantity"],
        reason=row["reason"],
        request_id=row["request_id"],
        actor=row["actor"],
        reference=row["reference"],
        note=row["note"],
        create_time=timestamp(row["created_at"]),
        on_hand_after=row["on_hand_after"],
    )


def line_pb(line: d.Line) -> pb.StockLine:
    return pb.StockLine(
        sku=line.sku,
        quantity=line.quantity,
        location_id=line.location_id,
        method=int(line.method or 0),  # type: ignore[arg-type]
    )


def lines(messages: Any, path: str = "lines") -> list[d.Line]:
    return d.normalize_lines(
        [
            d.Line(
                m.sku,
                m.quantity,
                m.location_id,
                wire.optional_enum(d.AllocationMethod, m.method, f"{path}[{i}].method"),
            )
            for i, m in enumerate(messages)
        ],
        path=path,
    )


def reservation(res: d.Reservation) -> pb.Reservation:
    return pb.Reservation(
        id=str(res.id),
        owner=res.owner,
        lines=[line_pb(line) for line in res.lines],
        state=int(res.state),  # type: ignore[arg-type]
        expire_time=timestamp(res.expires_at),
        create_time=timestamp(res.created_at),
        update_time=timestamp(res.updated_at),
        customer_id=res.customer_id,
    )


def transfer(value: d.Transfer) -> pb.Transfer:
    return pb.Transfer(
        id=str(value.id),
        sku=value.sku,
        from_location_id=value.from_location_id,
        to_location_id=value.to_location_id,
        quantity=value.quantity,
        state=int(value.state),  # type: ignore[arg-type]
        create_time=timestamp(value.created_at),
        receive_time=timestamp(value.received_at),
    )


def stock_changed(level: d.StockLevel, now: datetime) -> events_pb2.StockChanged:
    return events_pb2.StockChanged(
        sku=level.sku,
        location_id=level.location_id,
        available_to_promise=level.available_to_promise,
        on_hand=level.on_hand,
        reserved=level.reserved,
        version=level.version,
        change_time=timestamp(level.updated_at or now),
    )


def plan(result: sourcing.Plan) -> pb.FulfillmentPlan:
    return pb.FulfillmentPlan(
        allocations=[
            pb.Allocation(
                sku=a.sku,
                quantity=a.quantity,
                location_id=a.location_id,
                method=int(a.method),  # type: ignore[arg-type]
                distance_km=round(a.distance_km, 3),
                reason=a.reason,
            )
            for a in result.allocations
        ],
        shipment_count=result.shipment_count,
        unfulfillable=[
            pb.UnfulfillableLine(sku=sku, missing_quantity=missing, reason=why)
            for sku, missing, why in result.unfulfillable
        ],
        complete=result.complete,
        explanation=list(result.explanation),
        sourcing_profile=result.profile,
        sourcing_profile_version=result.profile_version,
    )


def rules_from_pb(
    message: pb.SourcingProfileVersion, path: str = "version"
) -> profiles.SourcingRules:
    """The content of a version as sent; validated by the use case (after an update merges
    it with the stored draft)."""
    allowed: dict[profiles.FulfillmentMethod, tuple[d.LocationType, ...]] = {}
    for i, entry in enumerate(message.allowed_location_types):
        where = f"{path}.allowed_location_types[{i}]"
        method = wire.required_enum(profiles.FulfillmentMethod, entry.method, f"{where}.method")
        if method in allowed:
            raise d.invalid(f"{where}.method", "listed twice", "METHOD_REPEATED")
        allowed[method] = tuple(
            wire.required_enum(d.LocationType, t, f"{where}.location_types[{j}]")
            for j, t in enumerate(entry.location_types)
        )
    return profiles.SourcingRules(
        criteria=tuple(
            wire.required_enum(profiles.SourcingCriterion, c, f"{path}.criteria[{i}]")
            for i, c in enumerate(message.criteria)
        ),
        max_shipments=message.max_shipments,
        allowed_types=allowed,
        fallbacks=tuple(
            wire.required_enum(profiles.SourcingFallback, f, f"{path}.fallbacks[{i}]")
            for i, f in enumerate(message.fallbacks)
        ),
        description=message.description,
    )


def profile_version(version: profiles.SourcingProfileVersion) -> pb.SourcingProfileVersion:
    rules = version.rules
    return pb.SourcingProfileVersion(
        name=version.name,
        profile=version.profile,
        version=version.version,
        state=int(version.state),  # type: ignore[arg-type]
        description=rules.description,
        criteria=[int(c) for c in rules.criteria],  # type: ignore[misc]
        max_shipments=rules.max_shipments,
        allowed_location_types=[
            pb.AllowedLocationTypes(
                method=int(method),  # type: ignore[arg-type]
                location_types=[int(t) for t in types],  # type: ignore[misc]
            )
            for method, types in rules.allowed_types.items()
        ],
        fallbacks=[int(f) for f in rules.fallbacks],  # type: ignore[misc]
        etag=version.etag,
        create_actor=version.create_actor,
        create_time=timestamp(version.created_at),
        activate_actor=version.activate_actor,
        activate_time=timestamp(version.activated_at),
        retire_time=timestamp(version.retired_at),
    )
