"""Gateway abuse-limit layer: in-memory token buckets (state per gateway replica).

Each limiter holds one bucket per key (principal, API key, client address). A bucket starts
full with ``burst`` tokens and refills at ``rate`` per second; a request takes one token or
is refused with the seconds until one is back. Buckets are kept in insertion order and the
oldest are dropped beyond ``max_keys``, so an attacker cycling addresses costs bounded
memory (and at worst resets the limit of a long-idle key, which was full anyway).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key → (tokens, last refill time)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0.0 when allowed (a token is taken), else seconds until a token is available."""
        now = self._clock()
        entry = self._buckets.get(key)
        if entry is None:
            tokens = self.burst
            if len(self._buckets) >= self._max_keys:
                # dicts keep insertion order: drop the oldest tenth at once.
                for stale in list(self._buckets)[: max(1, self._max_keys // 10)]:
                    del self._buckets[stale]
        else:
            tokens, last = entry
            tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
