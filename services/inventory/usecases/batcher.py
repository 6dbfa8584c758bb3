"""Inventory use cases: the reservation batcher. Concurrent ReserveStock calls that touch
the same SKUs are coalesced into one transaction (lock the levels once, decide every request
in arrival order in memory, write once), which is how a flash sale on one hot SKU stays fast
without ever overselling."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from services.inventory import domain as d
from tenpo.kit.errors import DomainError, Unavailable
from tenpo.kit.faults import expected_failure
from tenpo.kit.telemetry import captured_trace, resumed_trace

log = logging.getLogger(__name__)


class BatchDecider(Protocol):
    """Decides a batch in one transaction: one reservation or error per request, in order.
    ``traces`` holds each request's caller trace context, in the same order: what the
    decider writes on behalf of one request (its events) belongs to that caller's trace."""

    async def reserve_batch(
        self,
        requests: Sequence[d.ReservationRequest],
        traces: Sequence[otel_context.Context] | None = None,
    ) -> Sequence[d.Reservation | Exception]: ...


@dataclass
class _Pending:
    request: d.ReservationRequest
    future: asyncio.Future[d.Reservation]
    #: The caller's trace context at submission; the worker deciding the request runs in
    #: another task, which must not lend it the trace of whoever started that task.
    trace: otel_context.Context
    #: What the request's transaction needs to itself: its SKUs, and its idempotency key
    #: (NUL-prefixed; a SKU never holds a NUL).
    claims: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        skus = {line.sku for line in self.request.lines}
        if self.request.key:
            skus.add("\0" + self.request.key)
        self.claims = frozenset(skus)


class ReservationBatcher:
    """Coalesces concurrent reservations. Each worker takes every queued request whose SKUs
    no other worker is busy with and decides them in one transaction; requests for a SKU in
    flight wait for the next round, so one hot SKU is one lock holder at a time per process
    (across replicas the row lock orders them). Requests sharing an idempotency key are
    never decided together: each later one sees what the earlier one stored.

    Under load (requests were already waiting when a worker's last batch ended) a worker
    lets the next batch fill up to ``target`` requests, waiting at most ``linger`` seconds:
    when the process is busy, every transaction it saves is CPU for answering calls. An idle
    service never waits."""

    def __init__(
        self,
        decider: BatchDecider,
        *,
        workers: int,
        max_batch: int,
        target: int = 1,
        linger: float = 0.0,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._decider = decider
        self._tracer = tracer or trace.get_tracer(__name__)
        self._worker_count = workers
        self._max_batch = max_batch
        self._target = min(target, max_batch)
        self._linger = linger
        self._queue: deque[_Pending] = deque()
        self._busy: dict[int, frozenset[str]] = {}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    async def submit(self, request: d.ReservationRequest) -> d.Reservation:
        if self._closed:
            raise Unavailable("the service is shutting down", reason="SHUTTING_DOWN")
        if not self._workers:
            # An empty context: a task copies its creator's, and the first caller's trace
            # (and anything else it set) must not leak into every later batch.
            self._workers = [
                asyncio.create_task(
                    self._work(i), name=f"reservation-batcher-{i}", context=contextvars.Context()
                )
                for i in range(self._worker_count)
            ]
        future: asyncio.Future[d.Reservation] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future, captured_trace()))
        self._wake.set()
        if len(self._queue) >= self._target:
            self._full.set()
        return await future

    def _take(self, worker: int) -> list[_Pending]:
        blocked: set[str] = set().union(*(s for w, s in self._busy.items() if w != worker))
        taken: list[_Pending] = []
        kept: deque[_Pending] = deque()
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():
                continue  # the caller gave up before we started
            if len(taken) < self._max_batch and not (pending.claims & blocked):
                taken.append(pending)
                if pending.request.key:
                    # One request per key and batch: a retry racing its first attempt is
                    # decided after it, against what the first one stored.
                    blocked.add("\0" + pending.request.key)
            else:
                # Keep it for a later round; its SKUs stay blocked so arrival order holds.
                blocked |= pending.claims
                kept.append(pending)
        self._queue = kept
        return taken

    async def _fill(self) -> None:
        """Wait until ``target`` requests are queued or ``linger`` has passed."""
        if len(self._queue) >= self._target:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self._linger)

    async def _work(self, worker: int) -> None:
        loaded = False
        while True:
            await self._wake.wait()
            if loaded and self._linger:
                await self._fill()
            batch = self._take(worker)
            if not batch:
                self._wake.clear()
                loaded = False
                continue
            self._busy[worker] = frozenset().union(*(p.claims for p in batch))
            try:
                results = await self._decide(batch)
            except Exception as error:  # a database failure fails the whole batch
                results = [batch_failure(error, len(batch))] * len(batch)
            finally:
                self._busy.pop(worker, None)
                loaded = bool(self._queue)
                if loaded:
                    self._wake.set()
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _decide(self, batch: list[_Pending]) -> Sequence[d.Reservation | Exception]:
        """A lone request is decided in its caller's trace, SQL spans included. A batch
        serves several traces: it gets a span of its own, linked to each caller's span, and
        the decider puts each request's events in that request's trace."""
        requests = [p.request for p in batch]
        traces = [p.trace for p in batch]
        if len(batch) == 1:
            with resumed_trace(traces[0]):
                return await self._decider.reserve_batch(requests, traces)
        links = [
            trace.Link(context)
            for context in (trace.get_current_span(t).get_span_context() for t in traces)
            if context.is_valid
        ]
        with self._tracer.start_as_current_span(
            "reservation batch",
            context=otel_context.Context(),
            links=links,
            attributes={"tenpo.reservation.batch_size": len(batch)},
        ):
            return await self._decider.reserve_batch(requests, traces)

    async def close(self) -> None:
        self._closed = True
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    Unavailable("the service is shutting down", reason="SHUTTING_DOWN")
                )


def batch_failure(error: Exception, size: int) -> Exception:
    """What every request of a failed batch is told. A connection failure is the kit's
    UNAVAILABLE; a value the database refused (a data exception) is the request's fault
    only when it was alone in its batch; anything else fails a batch of innocent requests
    too, so they are told to retry."""
    if isinstance(error, DomainError):
        return error
    expected = expected_failure(error)
    if isinstance(expected, Unavailable):
        log.warning("reservation batch failed: %s", expected.reason, extra={"size": size})
        return expected
    if expected is not None and size == 1:
        return expected
    log.exception("reservation batch failed", extra={"size": size})
    return Unavailable("reservation failed; retry", reason="RESERVATION_RETRY")
