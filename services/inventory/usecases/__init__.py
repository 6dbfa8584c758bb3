"""Inventory use cases, one module per aggregate; each command owns its transaction.

``Inventory`` wires them over one database, one location cache and one clock:
``locations``, ``stock``, ``transfers``, ``reservations`` (with the batcher), ``profiles``
(sourcing profiles), ``sourcing`` and the ``catalog`` projection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.inventory import domain as d
from services.inventory.usecases.access import sees_details
from services.inventory.usecases.batcher import ReservationBatcher
from services.inventory.usecases.catalog import CatalogProjection
from services.inventory.usecases.common import Context
from services.inventory.usecases.locations import LocationCache, Locations
from services.inventory.usecases.profiles import ProfileCache, Profiles
from services.inventory.usecases.reservations import Reservations
from services.inventory.usecases.sourcing import Sourcing
from services.inventory.usecases.stock import Stock
from services.inventory.usecases.transfers import Transfers
from tenpo.kit.db import Database

__all__ = ["Inventory", "ReservationBatcher", "sees_details"]


class Inventory:
    def __init__(
        self,
        db: Database,
        *,
        require_known_skus: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_workers: int = 2,
        max_batch: int = 500,
        batch_target: int = 1,
        batch_linger: float = 0.0,
        customer_limits: d.CustomerLimits | None = None,
    ) -> None:
        self.db = db
        self.location_cache = LocationCache(db)
        context = Context(
            db=db,
            locations=self.location_cache,
            clock=clock,
            require_known_skus=require_known_skus,
        )
        self.profile_cache = ProfileCache(db)
        self.locations = Locations(db, self.location_cache)
        self.profiles = Profiles(context, self.profile_cache)
        self.stock = Stock(context)
        self.transfers = Transfers(context)
        self.reservations = Reservations(
            context,
            batch_workers=batch_workers,
            max_batch=max_batch,
            batch_target=batch_target,
            batch_linger=batch_linger,
            customer_limits=customer_limits or d.CustomerLimits(),
            profiles=self.profile_cache,
        )
        self.sourcing = Sourcing(context, self.profile_cache)
        self.catalog = CatalogProjection(context)
