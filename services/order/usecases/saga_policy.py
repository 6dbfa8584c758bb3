"""The checkout saga's settings, and how a failed step becomes the caller's answer (the
same answer for every retry of its request_id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from services.order.domain.saga import FailureKind, SagaStep, StepFailure
from tenpo.kit.errors import Aborted, DomainError, FailedPrecondition, NotFound, Unavailable


@dataclass(frozen=True)
class SagaPolicy:
    #: How long a runner owns a saga without writing to it; a dead runner's saga is taken
    #: over by the sweeper after this.
    lease: timedelta = timedelta(seconds=30)
    #: A saga left waiting for a dependency is tried again after this.
    retry_after: timedelta = timedelta(seconds=2)
    #: How long stock and redemptions are held while the saga runs (released by their owners
    #: after it even if the order service never comes back).
    hold: timedelta = timedelta(minutes=15)
    payment_timeout_seconds: float = 5.0
    #: How long a retry of a running request_id waits for the first to finish.
    wait_seconds: float = 30.0
    poll_seconds: float = 0.05
    #: Runs of a saga waiting on an unavailable step before its checkout is given up
    #: (before the confirmation only; after it, a saga never gives up).
    max_attempts: int = 20
    #: Checkouts this process runs at once; more wait their turn before touching the
    #: database. Without it a burst (1,000 at once) queues every saga step behind every
    #: new request at the connection pool, and steps starve past the pool's timeout.
    max_concurrent: int = 16
    #: How long a konbini payment number is accepted.
    konbini_window: timedelta = timedelta(days=3)


class LeaseLost(Exception):
    """Another runner took the saga over (this one was too slow): stop touching it."""


_ERRORS: Mapping[FailureKind, type[DomainError]] = {
    FailureKind.REJECTED: FailedPrecondition,
    FailureKind.CONFLICT: Aborted,
    FailureKind.UNAVAILABLE: Unavailable,
    FailureKind.NOT_FOUND: NotFound,
}


def failure_error(
    reason: str,
    kind: str | None,
    message: str | None,
    metadata: Mapping[str, str] | None = None,
) -> DomainError:
    """The answer of a failed checkout; the same for every retry of its request_id."""
    error_type = _ERRORS.get(FailureKind(kind or FailureKind.REJECTED), FailedPrecondition)
    return error_type(message or "the checkout failed", reason=reason, metadata=metadata)


def failure_of(step: SagaStep, error: DomainError) -> StepFailure:
    if isinstance(error, NotFound):
        kind = FailureKind.NOT_FOUND
    elif isinstance(error, Aborted):
        kind = FailureKind.CONFLICT
    else:
        kind = FailureKind.REJECTED
    return StepFailure(step, kind, error.reason or "CHECKOUT_FAILED", error.message)
