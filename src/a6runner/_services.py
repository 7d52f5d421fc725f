"""Runner-wide services for plugins: the token buckets behind limit-req and the
fixed-window counters behind limit-count, kept locally or in Redis.

Local limits live in this process; with ``--workers N`` the supervisor owns them and the
workers reach them over their control channel (see _workers.py), so a limit holds for the
runner as a whole. Redis limits (``policy`` redis / redis-cluster) go from each worker to
Redis through that worker's own connection pools (_redis.py), so they hold for every
gateway node that uses the same Redis.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._limits import LimitPolicy, Quota, load_redis

if TYPE_CHECKING:
    from ._redis import RedisStores


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


@dataclass(slots=True)
class _Window:
    used: int
    ends_at: float


class FixedWindowCounters:
    """Fixed-window counters keyed by name, as APISIX's limit-count: a window opens with
    the first call and lasts ``window`` seconds; a call that does not fit what is left is
    refused and not counted."""

    SWEEP_EVERY = 60.0  # seconds between sweeps of ended windows

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._next_sweep = clock() + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._windows)

    def count(self, key: str, limit: int, window: float, cost: int = 1) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until the window ends) for one call of ``cost``."""
        now = self._clock()
        if now >= self._next_sweep:
            self.forget_ended(now)
        w = self._windows.get(key)
        if w is None or now >= w.ends_at:
            if cost > limit:  # would not fit even a fresh window: open none
                return False, limit, window
            w = self._windows[key] = _Window(0, now + window)
        left = min(window, w.ends_at - now)  # (now + window) - now may exceed window
        if w.used + cost > limit:
            return False, max(0, limit - w.used), left
        w.used += cost
        return True, limit - w.used, left

    def forget_ended(self, now: float | None = None) -> int:
        """Drop the windows that have ended (a new call opens a fresh one anyway), so memory
        stays bounded by the windows in use. Returns how many."""
        if now is None:
            now = self._clock()
        self._next_sweep = now + self.SWEEP_EVERY
        ended = [k for k, w in self._windows.items() if w.ends_at <= now]
        for k in ended:
            del self._windows[k]
        return len(ended)


class PolicyServices(abc.ABC):
    """RunnerServices, whatever the policy: local limits through ``_local_reserve`` /
    ``_local_count`` (this process, or the supervisor in a worker), Redis limits through
    this process's own connection pools, made on first use (``clock`` is what their
    failure log is timed by)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._redis_stores: RedisStores | None = None

    async def reserve(
        self, key: str, rate: float, burst: int, policy: LimitPolicy | None = None
    ) -> float | None:
        if policy is None or policy.redis is None:
            return await self._local_reserve(key, rate, burst)
        stores = self._redis_stores or await self._redis()
        return await stores.reserve(policy.redis, key, rate, burst)

    async def counter(
        self,
        key: str,
        limit: int,
        window: float,
        policy: LimitPolicy | None = None,
        cost: int = 1,
    ) -> Quota:
        if not (limit >= 0 and window > 0 and cost >= 1):
            raise ValueError("counter() needs limit >= 0, window > 0 and cost >= 1")
        if policy is None or policy.redis is None:
            return await self._local_count(key, limit, window, cost)
        stores = self._redis_stores or await self._redis()
        return await stores.count(policy.redis, key, limit, window, cost)

    async def aclose(self) -> None:
        """Close the Redis connections (local limits need nothing)."""
        if self._redis_stores is not None:
            await self._redis_stores.aclose()

    async def _redis(self) -> RedisStores:
        """The Redis stores, once redis-py is imported (in a thread: see load_redis)."""
        module = await asyncio.wrap_future(load_redis())
        if self._redis_stores is None:  # (another call may have made them meanwhile)
            self._redis_stores = module.RedisStores(self.clock)
        return self._redis_stores

    @abc.abstractmethod
    async def _local_reserve(self, key: str, rate: float, burst: int) -> float | None:
        """TokenBuckets.reserve wherever this process's local limits live."""

    @abc.abstractmethod
    async def _local_count(self, key: str, limit: int, window: float, cost: int) -> Quota:
        """FixedWindowCounters.count wherever this process's local limits live."""


class LocalServices(PolicyServices):
    """RunnerServices for a single process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.buckets = TokenBuckets(clock)
        self.counters = FixedWindowCounters(clock)

    async def _local_reserve(self, key: str, rate: float, burst: int) -> float | None:
        return self.buckets.reserve(key, rate, burst)

    async def _local_count(self, key: str, limit: int, window: float, cost: int) -> Quota:
        allowed, remaining, reset = self.counters.count(key, limit, window, cost)
        return Quota(allowed, limit, remaining, reset)
