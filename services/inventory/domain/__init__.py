"""Inventory domain: locations, stock levels and their invariants, transfers, reservations
and what a customer may hold. No I/O. Sourcing (pure too) is in ``domain.sourcing``.

The invariants every write goes through (`StockLevel` refuses to break them, the database's
CHECK constraints back them up):

- on_hand >= 0, reserved >= 0, reserved <= on_hand, safety_stock >= 0, in_transit >= 0;
- a reservation never takes more than the available to promise (ATP =
  on_hand - reserved - safety_stock), so ATP never goes below zero through a reservation.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import IntEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenpo.kit.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)

LOCATION_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
MAX_LINES = 100
MAX_QUANTITY = 1_000_000
DEFAULT_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(days=14)

Key = tuple[str, str]  # (sku, location_id)


class LocationType(IntEnum):
    # Values mirror tenpo.inventory.v1.LocationType.
    DISTRIBUTION_CENTER = 1
    FULFILLMENT_CENTER = 2
    STORE = 3


class Capability(IntEnum):
    CLICK_AND_COLLECT = 1
    SHIP_FROM_STORE = 2
    SAME_DAY_DELIVERY = 3


class MovementReason(IntEnum):
    RECEIPT = 1
    SALE = 2
    RETURN = 3
    DAMAGE = 4
    CYCLE_COUNT = 5
    TRANSFER_OUT = 6
    TRANSFER_IN = 7
    CORRECTION = 8


#: Reasons AdjustStock accepts, with the sign they require (0: either).
ADJUSTMENT_SIGNS: Mapping[MovementReason, int] = {
    MovementReason.RECEIPT: 1,
    MovementReason.RETURN: 1,
    MovementReason.SALE: -1,
    MovementReason.DAMAGE: -1,
    MovementReason.CORRECTION: 0,
}


class ReservationState(IntEnum):
    ACTIVE = 1
    COMMITTED = 2
    RELEASED = 3
    EXPIRED = 4


class TransferState(IntEnum):
    IN_TRANSIT = 1
    RECEIVED = 2


class AllocationMethod(IntEnum):
    PICKUP = 1
    TRANSFER_TO_PICKUP = 2
    SHIP = 3
    SAME_DAY = 4


# ------------------------------------------------------------------------------- errors


def invalid(field_path: str, description: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field_path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(field_path, description)],
    )


def insufficient_stock(
    sku: str, location_id: str, available: int, wanted: int
) -> FailedPrecondition:
    return FailedPrecondition(
        f"only {available} of {sku} available to promise at {location_id or 'any location'}, "
        f"{wanted} wanted",
        reason="INSUFFICIENT_STOCK",
        metadata={
            "sku": sku,
            "location_id": location_id,
            "available": str(available),
            "requested": str(wanted),
        },
    )


def check_sku(sku: str, path: str = "sku") -> str:
    if not SKU_PATTERN.match(sku):
        raise invalid(path, "1-64 letters, digits, '.', '_' or '-'", "SKU_INVALID")
    return sku


def check_location_id(location_id: str, path: str = "location_id") -> str:
    if not LOCATION_ID_PATTERN.match(location_id):
        raise invalid(path, "1-63 lowercase letters, digits or '-'", "LOCATION_ID_INVALID")
    return location_id


def check_quantity(quantity: int, path: str = "quantity") -> int:
    if quantity < 1 or quantity > MAX_QUANTITY:
        raise invalid(path, f"must be 1-{MAX_QUANTITY}", "QUANTITY_INVALID")
    return quantity


# ---------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float

    def validate(self, path: str) -> GeoPoint:
        if not (-90 <= self.latitude <= 90 and -180 <= self.longitude <= 180):
            raise invalid(path, "latitude -90..90 and longitude -180..180", "GEO_POINT_INVALID")
        return self


EARTH_RADIUS_KM = 6371.0088


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle (haversine) distance: good to ~0.5 % for retail distances."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Address:
    region_code: str = ""
    postal_code: str = ""
    administrative_area: str = ""
    locality: str = ""
    address_lines: tuple[str, ...] = ()

    def validate(self, path: str) -> None:
        """Bounded like the customer service's addresses: a location is shown on every
        touchpoint and copied into events, so no field may be arbitrarily long."""
        for name, limit in (
            ("region_code", 2),
            ("postal_code", 16),
            ("administrative_area", 50),
            ("locality", 100),
        ):
            if len(getattr(self, name)) > limit:
                raise invalid(f"{path}.{name}", f"at most {limit} characters", "ADDRESS_INVALID")
        if len(self.address_lines) > MAX_ADDRESS_LINES:
            raise invalid(
                f"{path}.address_lines", f"at most {MAX_ADDRESS_LINES} lines", "ADDRESS_INVALID"
            )
        for i, line in enumerate(self.address_lines):
            if len(line) > MAX_ADDRESS_LINE:
                raise invalid(
                    f"{path}.address_lines[{i}]",
                    f"at most {MAX_ADDRESS_LINE} characters",
                    "ADDRESS_INVALID",
                )


MAX_ADDRESS_LINES = 5
MAX_ADDRESS_LINE = 200
MAX_TIME_ZONE = 64
#: How far same-day delivery reaches from a location whose radius is not set.
DEFAULT_SAME_DAY_RADIUS_KM = 20.0
MAX_SAME_DAY_RADIUS_KM = 500.0
MAX_DAILY_CAPACITY = 1_000_000


@dataclass(frozen=True)
class DailyCapacity:
    """A limit per local day of the location; 0 means no limit of that kind."""

    units_per_day: int = 0
    orders_per_day: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.units_per_day or self.orders_per_day)

    def validate(self, path: str) -> DailyCapacity:
        for name in ("units_per_day", "orders_per_day"):
            if not 0 <= getattr(self, name) <= MAX_DAILY_CAPACITY:
                raise invalid(
                    f"{path}.{name}", f"0 (no limit) to {MAX_DAILY_CAPACITY}", "CAPACITY_INVALID"
                )
        return self


NO_LIMIT = DailyCapacity()


@dataclass(frozen=True)
class Location:
    id: str
    display_name: str
    type: LocationType
    geo_point: GeoPoint
    address: Address = Address()
    time_zone: str = "Asia/Tokyo"
    priority: int = 100
    capabilities: frozenset[Capability] = frozenset()
    low_stock_threshold: int = 3
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ship_from_store_capacity: DailyCapacity = NO_LIMIT
    same_day_capacity: DailyCapacity = NO_LIMIT
    same_day_radius_km: float = 0.0

    def validate(self) -> Location:
        check_location_id(self.id, "location.id")
        if not self.display_name.strip() or len(self.display_name) > 200:
            raise invalid("location.display_name", "1-200 characters", "DISPLAY_NAME_INVALID")
        self.geo_point.validate("location.geo_point")
        self.address.validate("location.address")
        if len(self.time_zone) > MAX_TIME_ZONE or not re.fullmatch(
            r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*", self.time_zone
        ):
            raise invalid("location.time_zone", "an IANA time zone", "TIME_ZONE_INVALID")
        if not 0 <= self.priority <= 10_000:
            raise invalid("location.priority", "0-10000", "PRIORITY_INVALID")
        if not 0 <= self.low_stock_threshold <= MAX_QUANTITY:
            raise invalid("location.low_stock_threshold", "not negative", "THRESHOLD_INVALID")
        self.ship_from_store_capacity.validate("location.ship_from_store_capacity")
        self.same_day_capacity.validate("location.same_day_capacity")
        if not 0 <= self.same_day_radius_km <= MAX_SAME_DAY_RADIUS_KM:
            raise invalid(
                "location.same_day_radius_km",
                f"0 (the default, {DEFAULT_SAME_DAY_RADIUS_KM:g} km) to {MAX_SAME_DAY_RADIUS_KM:g}",
                "SAME_DAY_RADIUS_INVALID",
            )
        return self

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def ships(self) -> bool:
        """Whether online orders may be shipped from here."""
        return self.type is not LocationType.STORE or self.can(Capability.SHIP_FROM_STORE)

    def local_day(self, now: datetime) -> date:
        """The day a daily capacity counts against: the location's own calendar day."""
        try:
            zone: tzinfo = ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
        return now.astimezone(zone).date()

    @property
    def same_day_reach_km(self) -> float:
        return self.same_day_radius_km or DEFAULT_SAME_DAY_RADIUS_KM

    def capacity_kind(self, method: AllocationMethod | None) -> Capability | None:
        """Which daily capacity units leaving here by ``method`` use: same-day delivery
        from anywhere, parcels from a store; None for pickups, transfers and DC parcels."""
        if method is AllocationMethod.SAME_DAY:
            return Capability.SAME_DAY_DELIVERY
        if method is AllocationMethod.SHIP and self.type is LocationType.STORE:
            return Capability.SHIP_FROM_STORE
        return None

    def capacity(self, kind: Capability) -> DailyCapacity:
        if kind is Capability.SAME_DAY_DELIVERY:
            return self.same_day_capacity
        if kind is Capability.SHIP_FROM_STORE:
            return self.ship_from_store_capacity
        return NO_LIMIT

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


# ------------------------------------------------------------------------------- stock


@dataclass(frozen=True)
class StockLevel:
    """One SKU at one location. Every change returns a new level or raises."""

    sku: str
    location_id: str
    on_hand: int = 0
    reserved: int = 0
    safety_stock: int = 0
    in_transit: int = 0
    version: int = 0
    updated_at: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.sku, self.location_id)

    @property
    def available_to_promise(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety_stock)

    def reserve(self, quantity: int) -> StockLevel:
        if quantity > self.available_to_promise:
            raise insufficient_stock(
                self.sku, self.location_id, self.available_to_promise, quantity
            )
        return replace(self, reserved=self.reserved + quantity)

    def release(self, quantity: int) -> StockLevel:
        # Reservation lines are the only source of `reserved`, so this cannot go negative
        # unless the data is already broken; refuse rather than hide it.
        if quantity > self.reserved:
            raise FailedPrecondition(
                f"releasing {quantity} of {self.reserved} reserved", reason="RESERVED_UNDERFLOW"
            )
        return replace(self, reserved=self.reserved - quantity)

    def sell_reserved(self, quantity: int) -> StockLevel:
        """A committed reservation: the units leave on hand and reserved together."""
        return replace(self.release(quantity), on_hand=self.on_hand - quantity)

    def adjust(self, delta: int) -> StockLevel:
        """Change on hand; refuses to remove units that are free neither of reservations
        nor physically present."""
        after = self.on_hand + delta
        if after < self.reserved:
            free = self.on_hand - self.reserved
            if self.reserved:
                raise FailedPrecondition(
                    f"only {free} of {self.on_hand} on hand are unreserved; {-delta} to remove",
                    reason="STOCK_RESERVED",
                    metadata={"sku": self.sku, "location_id": self.location_id},
                )
            raise FailedPrecondition(
                f"only {self.on_hand} on hand; {-delta} to remove",
                reason="INSUFFICIENT_ON_HAND",
                metadata={"sku": self.sku, "location_id": self.location_id},
            )
        return replace(self, on_hand=after)

    def with_safety_stock(self, safety_stock: int) -> StockLevel:
        if safety_stock < 0 or safety_stock > MAX_QUANTITY:
            raise invalid("safety_stock", f"must be 0-{MAX_QUANTITY}", "SAFETY_STOCK_INVALID")
        return replace(self, safety_stock=safety_stock)

    def take_out(self, quantity: int) -> StockLevel:
        """Units leave for another location: only promisable ones may go."""
        if quantity > self.available_to_promise:
            raise insufficient_stock(
                self.sku, self.location_id, self.available_to_promise, quantity
            )
        return replace(self, on_hand=self.on_hand - quantity)

    def expect_in_transit(self, quantity: int) -> StockLevel:
        """Units sent here by a transfer: counted as on their way, not yet promisable."""
        return replace(self, in_transit=self.in_transit + quantity)

    def receive_in_transit(self, quantity: int) -> StockLevel:
        """A transfer arrived: its units move from in transit to on hand."""
        if quantity > self.in_transit:
            # Only transfers put units in transit; fewer than one carries means broken data.
            raise FailedPrecondition(
                f"receiving {quantity} of {self.in_transit} in transit",
                reason="IN_TRANSIT_UNDERFLOW",
                metadata={"sku": self.sku, "location_id": self.location_id},
            )
        return replace(self, in_transit=self.in_transit - quantity, on_hand=self.on_hand + quantity)


class StockSignal(IntEnum):
    OUT_OF_STOCK = 1
    BACK_IN_STOCK = 2
    LOW_STOCK = 3


def stock_signals(before_atp: int, after_atp: int, threshold: int) -> list[StockSignal]:
    """What a change of ATP at a location announces, beyond StockChanged itself."""
    signals: list[StockSignal] = []
    if before_atp > 0 and after_atp == 0:
        signals.append(StockSignal.OUT_OF_STOCK)
    if before_atp == 0 and after_atp > 0:
        signals.append(StockSignal.BACK_IN_STOCK)
    # Low means it fell into the band; coming back from zero into it is BackInStock only.
    if 0 < after_atp <= threshold < before_atp:
        signals.append(StockSignal.LOW_STOCK)
    return signals


def check_adjustment(delta: int, reason: MovementReason) -> None:
    if delta == 0 or abs(delta) > MAX_QUANTITY:
        raise invalid(
            "quantity", f"must be non-zero, at most {MAX_QUANTITY} either way", "QUANTITY_INVALID"
        )
    sign = ADJUSTMENT_SIGNS.get(reason)
    if sign is None:
        raise invalid(
            "reason",
            "RECEIPT, SALE, RETURN, DAMAGE or CORRECTION (counts use SetStockLevel, transfers "
            "TransferStock)",
            "REASON_INVALID",
        )
    if sign and (delta > 0) != (sign > 0):
        raise invalid(
            "quantity",
            f"{reason.name} {'adds' if sign > 0 else 'removes'} stock",
            "QUANTITY_SIGN_INVALID",
        )


# ----------------------------------------------------------------------------- transfers


@dataclass(frozen=True)
class Transfer:
    """Units on their way from one location to another: they left the source's on hand
    when sent and join the target's on hand when received."""

    id: uuid.UUID
    sku: str
    from_location_id: str
    to_location_id: str
    quantity: int
    state: TransferState = TransferState.IN_TRANSIT
    created_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def source_key(self) -> Key:
        return (self.sku, self.from_location_id)

    @property
    def target_key(self) -> Key:
        return (self.sku, self.to_location_id)

    @property
    def received(self) -> bool:
        return self.state is TransferState.RECEIVED


def new_transfer(sku: str, from_location_id: str, to_location_id: str, quantity: int) -> Transfer:
    check_sku(sku)
    check_location_id(from_location_id, "from_location_id")
    check_location_id(to_location_id, "to_location_id")
    check_quantity(quantity)
    if from_location_id == to_location_id:
        raise invalid("to_location_id", "must differ from from_location_id", "SAME_LOCATION")
    return Transfer(uuid.uuid4(), sku, from_location_id, to_location_id, quantity)


# -------------------------------------------------------------------------- reservations


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    location_id: str = ""  # empty: anywhere
    #: How the units reach the customer (None: not said — a pickup, a hold); SHIP from a
    #: store and SAME_DAY use the location's daily capacity.
    method: AllocationMethod | None = None


def normalize_lines(lines: Sequence[Line], *, path: str = "lines") -> list[Line]:
    """Validated lines with duplicates (same SKU and location) merged, in first-seen order."""
    if not lines:
        raise invalid(path, "at least one line", "LINES_REQUIRED")
    if len(lines) > MAX_LINES:
        raise invalid(path, f"at most {MAX_LINES} lines", "TOO_MANY_LINES")
    merged: dict[Key, int] = {}
    methods: dict[Key, AllocationMethod | None] = {}
    for i, line in enumerate(lines):
        check_sku(line.sku, f"{path}[{i}].sku")
        check_quantity(line.quantity, f"{path}[{i}].quantity")
        method = line.method
        if line.location_id:
            check_location_id(line.location_id, f"{path}[{i}].location_id")
        elif method not in (None, AllocationMethod.SHIP):
            raise invalid(
                f"{path}[{i}].method",
                "a line without location_id is sourced for delivery (SHIP or unspecified)",
                "METHOD_INVALID",
            )
        else:
            method = None  # placed lines say SHIP
        key = (line.sku, line.location_id)
        if key in methods and methods[key] != method:
            # One line per level keeps a commit's ledger exact (on_hand_after per line).
            raise invalid(
                f"{path}[{i}].method",
                "one method per SKU and location in a request",
                "METHOD_CONFLICT",
            )
        methods[key] = method
        merged[key] = merged.get(key, 0) + line.quantity
    for (sku, _), quantity in merged.items():
        if quantity > MAX_QUANTITY:
            raise invalid(path, f"{sku}: at most {MAX_QUANTITY} units", "QUANTITY_INVALID")
    return [
        Line(sku, quantity, location, methods[(sku, location)])
        for (sku, location), quantity in merged.items()
    ]


def check_ttl(ttl: timedelta | None) -> timedelta:
    if ttl is None:
        return DEFAULT_TTL
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise invalid("ttl", "more than 0 and at most 14 days", "TTL_INVALID")
    return ttl


def check_owner(owner: str) -> str:
    if not OWNER_PATTERN.match(owner):
        raise invalid("owner", "1-128 characters such as 'carts/<id>'", "OWNER_INVALID")
    return owner


@dataclass(frozen=True)
class CustomerLimits:
    """What a customer may hold by itself (staff and services, e.g. the order service, are
    not limited): a shopper cannot take a SKU's whole stock off the shelf for days."""

    max_quantity_per_line: int = 10
    max_ttl: timedelta = timedelta(hours=1)
    max_active: int = 5


def customer_owner_prefix(subject: str) -> str:
    return f"customers/{subject}"


def check_customer_reservation(
    subject: str,
    owner: str,
    lines: Sequence[Line],
    ttl: timedelta,
    limits: CustomerLimits,
    *,
    path: str = "lines",
) -> None:
    """A customer reserves for itself only (``customers/<its id>`` or a resource under it,
    such as ``customers/<id>/carts/<cart>``), within the per-line and TTL caps."""
    own = customer_owner_prefix(subject)
    if not subject or (owner != own and not owner.startswith(own + "/")):
        raise PermissionDenied(
            "a customer may only reserve for itself",
            reason="OWNER_NOT_ALLOWED",
            field_violations=[FieldViolation("owner", f"must be {own!r} or under it")],
        )
    for i, line in enumerate(lines):
        if line.quantity > limits.max_quantity_per_line:
            raise invalid(
                f"{path}[{i}].quantity",
                f"a customer may hold at most {limits.max_quantity_per_line} per line",
                "RESERVATION_QUANTITY_LIMIT",
            )
    check_customer_ttl(ttl, limits)


def check_customer_ttl(ttl: timedelta, limits: CustomerLimits) -> None:
    if ttl > limits.max_ttl:
        raise invalid(
            "ttl",
            f"a customer may hold stock for at most {int(limits.max_ttl.total_seconds())} s",
            "RESERVATION_TTL_LIMIT",
        )


def check_customer_renewal(
    created_at: datetime, now: datetime, ttl: timedelta, limits: CustomerLimits
) -> None:
    """A customer's own hold lives at most ``max_ttl`` from when it was made: each extension
    within the cap, repeated, would otherwise hold stock indefinitely."""
    if now + ttl > created_at + limits.max_ttl:
        left = max(0, int((created_at + limits.max_ttl - now).total_seconds()))
        raise invalid(
            "ttl",
            f"a customer's hold lasts at most {int(limits.max_ttl.total_seconds())} s from"
            f" when it was made ({left} s left)",
            "RESERVATION_TTL_LIMIT",
        )


def too_many_active(limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"a customer may hold at most {limit} active reservations; release or commit one",
        reason="TOO_MANY_ACTIVE_RESERVATIONS",
        metadata={"limit": str(limit)},
    )


@dataclass(frozen=True)
class Reservation:
    id: uuid.UUID
    owner: str
    lines: tuple[Line, ...]
    state: ReservationState
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    customer_id: str = ""

    def require_active(self, now: datetime) -> None:
        if self.state is not ReservationState.ACTIVE:
            raise FailedPrecondition(
                f"the reservation is {self.state.name.lower()}",
                reason="RESERVATION_NOT_ACTIVE",
                metadata={"state": self.state.name},
            )
        if self.expires_at <= now:
            # Expired but not swept yet: it is as good as gone.
            raise FailedPrecondition(
                "the reservation has expired",
                reason="RESERVATION_EXPIRED",
                metadata={"state": ReservationState.EXPIRED.name},
            )


@dataclass(frozen=True)
class ReservationRequest:
    owner: str
    lines: tuple[Line, ...]
    ttl: timedelta
    #: The idempotency key (the client's request_id bound to the caller), "" without one.
    key: str
    fingerprint: bytes
    actor: str
    customer_id: str = ""
    near: GeoPoint | None = None
