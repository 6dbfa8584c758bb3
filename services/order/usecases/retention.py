"""Retention of failed checkouts.

A failed PlaceOrder leaves a FAILED order row: it is the request_id's stored answer, so a
retry (a client that lost the answer) gets the same error instead of a second checkout.
Nothing else needs it — a failed checkout holds nothing (every compensation made before its
saga is done), has no fulfilment, return or event, and is no sale to keep books of — yet
a caller can make one per request (another customer's cart, a stale etag), so without an
end the table would grow with them. Every replica deletes, every
``FAILED_SWEEP_SECONDS``, the failed checkouts that failed more than
``ORDER_FAILED_RETENTION_HOURS`` ago: the request_id of a failed checkout is answered as
the first time for that long; later it is a new request."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from services.order.store.orders import OrderStore
from tenpo.kit.db import Database
from tenpo.kit.errors import DomainError

log = logging.getLogger(__name__)

#: How often each replica looks (the retention is counted in hours).
FAILED_SWEEP_SECONDS = 600.0


async def purge_failed(db: Database, retention: timedelta, batch: int = 500) -> int:
    """Delete the failed checkouts older than ``retention``; the number deleted. Batches,
    each its own transaction (SKIP LOCKED: replicas share the work, none waits)."""
    total = 0
    while True:
        async with db.unit_of_work() as uow:
            deleted = len(
                await OrderStore(uow.session).delete_failed(datetime.now(UTC) - retention, batch)
            )
            await uow.commit()
        total += deleted
        if deleted < batch:
            if total:
                log.info("failed checkouts deleted", extra={"deleted": total})
            return total


async def purge_failed_every(
    db: Database, retention: timedelta, interval_seconds: float = FAILED_SWEEP_SECONDS
) -> None:
    while True:
        try:
            await purge_failed(db, retention)
        except (DomainError, OSError) as error:
            log.warning("failed checkout sweep skipped", extra={"error": type(error).__name__})
        await asyncio.sleep(interval_seconds)
