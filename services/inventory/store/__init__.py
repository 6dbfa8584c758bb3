"""Inventory persistence: rows ⇄ domain objects, one module per aggregate (SQLAlchemy over
the unit of work's session; raw asyncpg for the reservation hot path)."""

from services.inventory.store.capacity import CapacityStore, LocationLimits, UsageKey
from services.inventory.store.catalog import DEMO_STOCKING_FLAG, SkuStore
from services.inventory.store.locations import LocationStore
from services.inventory.store.profiles import ProfileStore
from services.inventory.store.reservations import (
    RESERVE_SCOPE,
    ReservationStore,
    ReservationWriter,
)
from services.inventory.store.stock import StockStore, movement_row
from services.inventory.store.transfers import TransferStore

__all__ = [
    "DEMO_STOCKING_FLAG",
    "RESERVE_SCOPE",
    "CapacityStore",
    "LocationLimits",
    "LocationStore",
    "ProfileStore",
    "ReservationStore",
    "ReservationWriter",
    "SkuStore",
    "StockStore",
    "TransferStore",
    "UsageKey",
    "movement_row",
]
