"""Runner-wide services for plugins: the token buckets behind limit-req.

In one process they live here; with ``--workers N`` the supervisor owns them and the
workers reach them over their control channel (see _workers.py), so a bucket holds for
the runner as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: int
    tokens: float
    last: float


class TokenBuckets:
    """Token buckets keyed by name, with reservation semantics: every caller gets a slot,
    paying with a delay when the bucket is empty (like golang.org/x/time/rate Reserve,
    which the Go runner's limit-req uses). ``burst`` 0 rejects every caller."""

    SWEEP_EVERY = 60.0  # seconds between sweeps of full (forgettable) buckets

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep = clock() + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._buckets)

    def reserve(self, key: str, rate: float, burst: int) -> float | None:
        if burst <= 0:
            return None
        now = self._clock()
        if now >= self._next_sweep:
            self.forget_full(now)
        b = self._buckets.get(key)
        if b is None or b.rate != rate or b.burst != burst:
            b = self._buckets[key] = _Bucket(rate, burst, float(burst), now)
        if rate <= 0:  # never refills: the first ``burst`` callers pass, then none (as Go)
            if b.tokens < 1.0:
                return None
            b.tokens -= 1.0
            return 0.0
        b.tokens = min(float(b.burst), b.tokens + (now - b.last) * b.rate)
        b.last = now
        b.tokens -= 1.0
        return 0.0 if b.tokens >= 0 else -b.tokens / b.rate

    def forget_full(self, now: float | None = None) -> int:
        """Drop the buckets that have refilled completely: a new bucket would be in the
        same state, so memory stays bounded by the buckets in use. Returns how many."""
        if now is None:
            now = self._clock()
        self._next_sweep = now + self.SWEEP_EVERY
        full = [
            k
            for k, b in self._buckets.items()
            if b.rate > 0 and b.tokens + (now - b.last) * b.rate >= b.burst
        ]
        for k in full:
            del self._buckets[k]
        return len(full)


class LocalServices:
    """RunnerServices for a single process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets = TokenBuckets(clock)

    async def reserve(self, key: str, rate: float, burst: int) -> float | None:
        return self.buckets.reserve(key, rate, burst)
