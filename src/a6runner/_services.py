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

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def reserve(self, key: str, rate: float, burst: int) -> float | None:
        if burst <= 0:
            return None
        now = self._clock()
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

    def forget_idle(self, idle_for: float) -> None:
        """Drop buckets that have been full for ``idle_for`` seconds (memory bound)."""
        now = self._clock()
        for key in [k for k, b in self._buckets.items() if now - b.last > idle_for]:
            del self._buckets[key]


class LocalServices:
    """RunnerServices for a single process."""

    def __init__(self) -> None:
        self.buckets = TokenBuckets()

    async def reserve(self, key: str, rate: float, burst: int) -> float | None:
        return self.buckets.reserve(key, rate, burst)
