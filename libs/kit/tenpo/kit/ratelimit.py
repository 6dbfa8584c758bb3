"""Kit layer: in-memory token buckets (state per process), used by the gateway's abuse limits
and by the call guard for calls that came straight through the edge (per principal).

Each limiter holds one bucket per key (principal, API key, client address). A bucket starts
full with ``burst`` tokens and refills at ``rate`` per second; a request takes one token or
is refused with the seconds until one is back.

Memory is bounded by forgetting buckets, and forgetting a bucket hands its key a full burst
again. So only full buckets are ever dropped (forgetting them changes nothing), least
recently used first: churning other keys cannot reset a client that is still in its
penalty. Beyond ``max_keys`` the table only holds buckets that are still refilling; each is
full, and so can go, within ``burst / rate`` seconds, so the excess is bounded by the
request rate times that refill time. A sweep looks at the least recently used tenth of the
table; when it finds mostly refilling buckets the next one waits until the table has grown
by as much, so sweeping costs O(1) per new key even when nothing can go.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice

from tenpo.kit import errors


class TokenBucketLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("need rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._sweep_size = max(1, max_keys // 10)
        self._next_sweep = max_keys
        self._clock = clock
        # key → (tokens, last use), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0.0 when allowed (a token is taken), else seconds until a token is available."""
        now = self._clock()
        entry = self._buckets.get(key)
        if entry is None:
            tokens = self.burst
            if len(self._buckets) >= self._next_sweep:
                self._sweep(now)
        else:
            tokens, last = entry
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            self._buckets.move_to_end(key)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        """Drop the full buckets among the least recently used tenth of the table."""
        scanned = max(self._sweep_size, len(self._buckets) // 10)
        before = len(self._buckets)
        for key in list(islice(self._buckets, scanned)):
            tokens, last = self._buckets[key]
            if tokens + (now - last) * self.rate >= self.burst:
                del self._buckets[key]
        if (before - len(self._buckets)) * 2 >= scanned:
            # Worth it: sweep again at the next new key while still over the bound.
            self._next_sweep = self._max_keys
        else:
            # Mostly buckets still refilling: let the table grow by what was scanned before
            # looking again, so a sweep costs O(1) per new key even when nothing can go.
            self._next_sweep = max(self._max_keys, len(self._buckets) + scanned)


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def refuse_if_waiting(wait: float) -> None:
    """RESOURCE_EXHAUSTED ``RATE_LIMITED`` with ``retry_after_seconds`` when a bucket said to
    wait: the one refusal of the gateway's limits and the call guard's edge limit."""
    if wait > 0:
        seconds = retry_after_seconds(wait)
        raise errors.ResourceExhausted(
            f"rate limit exceeded; retry after {seconds} s",
            reason="RATE_LIMITED",
            metadata={"retry_after_seconds": str(seconds)},
        )
