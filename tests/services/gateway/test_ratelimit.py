"""Token buckets: refill, bounded memory, and eviction that never hands a penalised client a
fresh burst."""

from __future__ import annotations

import pytest

from services.gateway.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2.0, burst=3, clock=clock, max_keys=100)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # buckets are per key
    clock.now = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_churning_other_keys_cannot_reset_a_penalised_client() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1.0, burst=5, clock=clock, max_keys=100)
    clock.now = -10.0
    for i in range(100):  # the table is full of idle keys
        limiter.take(f"idle-{i}")
    clock.now = 0.0
    allowed = 0
    while limiter.take("attacker") == 0.0:
        allowed += 1
    assert allowed == 5
    # Thousands of other addresses, one request each, while the attacker waits.
    for i in range(5_000):
        clock.now = 3.0 * i / 5_000
        assert limiter.take(f"churn-{i}") == 0.0
    clock.now = 3.0
    # Three seconds refill three tokens: not the fresh burst of five a forgotten key gets.
    assert [limiter.take("attacker") == 0.0 for _ in range(4)] == [True, True, True, False]
    assert not any(f"idle-{i}" in limiter._buckets for i in range(100))  # full: they went


def test_least_recently_used_full_buckets_go_first() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=10.0, burst=2, clock=clock, max_keys=10)
    for i in range(10):
        limiter.take(f"k{i}")
    clock.now = 1.0  # every bucket is full again
    limiter.take("k0")  # k0 is now the most recently used
    limiter.take("new")  # the table is full: a sweep drops the least recently used
    assert "k0" in limiter._buckets
    assert "k1" not in limiter._buckets
    assert "new" in limiter._buckets


def test_memory_stays_bounded_once_penalties_run_out() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1.0, burst=2, clock=clock, max_keys=50)
    # Every key in its penalty at once: none may be dropped, the table grows...
    for i in range(200):
        while limiter.take(f"p{i}") == 0.0:
            pass
    assert len(limiter) == 200
    assert all(limiter.take(f"p{i}") > 0 for i in range(200))
    # ...and shrinks back once they have refilled (burst / rate = 2 s).
    for i in range(200):  # new keys, each full again a second after its one request
        clock.now = 10.0 + i / 10
        limiter.take(f"q{i}")
    assert len(limiter) <= 50
