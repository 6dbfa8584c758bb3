"""Gateway abuse-limit layer: the kit's in-memory token buckets (:mod:`tenpo.kit.ratelimit`),
one bucket per key (principal, API key, client address), state per gateway replica."""

from tenpo.kit.ratelimit import TokenBucketLimiter, retry_after_seconds

__all__ = ["TokenBucketLimiter", "retry_after_seconds"]
