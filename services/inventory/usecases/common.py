"""Inventory use cases: what every aggregate shares — the context they run in, the errors
they raise alike, and the stock events a change of levels announces."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.inventory import convert
from services.inventory import domain as d
from services.inventory.store import LocationStore, SkuStore
from services.inventory.usecases.locations import LocationCache, location_not_found
from tenpo.inventory.v1 import events_pb2
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.kit.db import Database, OutboxEvents, UnitOfWork
from tenpo.kit.errors import FailedPrecondition
from tenpo.kit.limits import declared

#: SKUs per request: the contract's bound on GetAvailability (``tenpo.common.v1.limits``).
MAX_SKUS = declared(inventory_api.GetAvailabilityRequest, "skus").max_items or 200


@dataclass(frozen=True)
class Context:
    """What every use case of the service needs: its database, the location cache, the
    clock, and whether stock needs a SKU the catalog announced."""

    db: Database
    locations: LocationCache
    clock: Callable[[], datetime]
    require_known_skus: bool = True


async def require_location(uow: UnitOfWork, location_id: str) -> d.Location:
    location = await LocationStore(uow.session).get(location_id)
    if location is None:
        raise location_not_found(location_id)
    return location


async def require_known(context: Context, uow: UnitOfWork, skus: Iterable[str]) -> None:
    if not context.require_known_skus:
        return
    unknown = await SkuStore(uow.session).unknown(skus)
    if unknown:
        raise FailedPrecondition(
            f"the catalog does not know SKU(s) {', '.join(unknown)}",
            reason="SKU_UNKNOWN",
            metadata={"skus": " ".join(unknown)},
        )


def bounded_skus(skus: Sequence[str], path: str = "skus") -> None:
    if not skus:
        raise d.invalid(path, "at least one SKU", "SKUS_REQUIRED")
    if len(skus) > MAX_SKUS:
        raise d.invalid(path, f"at most {MAX_SKUS}", "TOO_MANY_SKUS")
    for i, sku in enumerate(skus):
        d.check_sku(sku, f"{path}[{i}]")


def announce(
    uow: OutboxEvents,
    locations: Mapping[str, d.Location],
    before: Mapping[d.Key, int],
    after: Iterable[d.StockLevel],
    now: datetime,
) -> None:
    """StockChanged for every written level, and what its change of ATP signals (out of
    stock, back in stock, low stock at the location's threshold). ``before`` holds the ATP
    each level had.

    ``locations`` comes from the cache, read before the transaction took its connection:
    a cache refresh inside one could wait for a pooled connection while every connection
    waits for the refresh (and for the row locks their holders keep)."""
    for level in after:
        uow.add_event(convert.stock_changed(level, now))
        location = locations.get(level.location_id)
        threshold = location.low_stock_threshold if location else 0
        atp = level.available_to_promise
        for signal in d.stock_signals(before.get(level.key, 0), atp, threshold):
            if signal is d.StockSignal.OUT_OF_STOCK:
                uow.add_event(events_pb2.OutOfStock(sku=level.sku, location_id=level.location_id))
            elif signal is d.StockSignal.BACK_IN_STOCK:
                uow.add_event(
                    events_pb2.BackInStock(
                        sku=level.sku, location_id=level.location_id, available_to_promise=atp
                    )
                )
            else:
                uow.add_event(
                    events_pb2.LowStock(
                        sku=level.sku,
                        location_id=level.location_id,
                        available_to_promise=atp,
                        threshold=threshold,
                    )
                )


def atp_of(levels: Mapping[d.Key, d.StockLevel]) -> dict[d.Key, int]:
    """The ATP of locked levels, as ``announce`` wants it for ``before``."""
    return {key: level.available_to_promise for key, level in levels.items()}
