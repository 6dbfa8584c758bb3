"""Retention of failed checkouts.

A failed PlaceOrder leaves a FAILED order row: it is the request_id's stored answer, so a
retry (a client that lost the answer) gets the same error instead of a second checkout.
Nothing else needs it — a failed checkout holds nothing (every compensation made before its
saga is done), has no fulfilment, return or event, and is no sale to keep books of — yet
a caller can make one per request (another customer's cart, a stale etag), so without an
end the table would grow with them. Every replica deletes, every
``FAILED_SWEEP_SECONDS``, the failed checkouts that failed more than
``ORDER_FAILED_RETENTION_HOURS`` ago: the request_id of a failed checkout is answered as
the first time for that long; later it is a new request. It also deletes a customer's
failed checkouts beyond her newest ``ORDER_FAILED_MAX_PER_CUSTOMER``: one caller failing
at the gateway's rate limit keeps a bounded number, not a day's worth."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from services.order.store.orders import OrderStore
from tenpo.kit.db import Database
from tenpo.kit.errors import DomainError

log = logging.getLogger(__name__)

#: How often each replica looks: the per-customer cap bounds a customer's failed checkouts
#: to it plus what she can make in this long (the gateway's rate limit).
FAILED_SWEEP_SECONDS = 60.0


async def purge_failed(
    db: Database, retention: timedelta, keep_per_customer: int | None = None, batch: int = 500
) -> int:
    """Delete the failed checkouts older than ``retention`` and, with
    ``keep_per_customer``, a customer's beyond her newest that many; the number deleted.
    Batches, each its own transaction (SKIP LOCKED: replicas share the work, none waits)."""
    total = 0
    while True:
        async with db.unit_of_work() as uow:
            deleted = len(
                await OrderStore(uow.session).delete_failed(datetime.now(UTC) - retention, batch)
            )
            await uow.commit()
        total += deleted
        if deleted < batch:
            break
    while keep_per_customer is not None:
        async with db.unit_of_work() as uow:
            deleted = len(
                await OrderStore(uow.session).delete_failed_beyond(keep_per_customer, batch)
            )
            await uow.commit()
        total += deleted
        if deleted < batch:
            break
    if total:
        log.info("failed checkouts deleted", extra={"deleted": total})
    return total


async def purge_failed_every(
    db: Database,
    retention: timedelta,
    keep_per_customer: int,
    interval_seconds: float = FAILED_SWEEP_SECONDS,
) -> None:
    while True:
        try:
            await purge_failed(db, retention, keep_per_customer)
        except (DomainError, OSError) as error:
            log.warning("failed checkout sweep skipped", extra={"error": type(error).__name__})
        await asyncio.sleep(interval_seconds)
