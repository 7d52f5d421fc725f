"""Token buckets (limit-req's runner-wide state), with a fake clock."""

from __future__ import annotations

import pytest
from fake_clock import FakeClock

from a6runner._services import TokenBuckets


def test_burst_goes_at_once_then_one_per_interval() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    delays = [buckets.reserve("k", rate=5, burst=1) for _ in range(6)]
    assert delays == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_tokens_refill_with_time_up_to_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    assert [buckets.reserve("k", 2, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 10  # refills to burst (3), not to 20
    assert [buckets.reserve("k", 2, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.reserve("k", 2, 3) == 0.5


def test_burst_0_rejects_and_rate_0_never_refills() -> None:
    buckets = TokenBuckets(FakeClock())
    assert buckets.reserve("a", 5, 0) is None
    assert [buckets.reserve("b", 0, 2) for _ in range(3)] == [0.0, 0.0, None]


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(FakeClock())
    assert buckets.reserve("a", 1, 1) == 0.0
    assert buckets.reserve("b", 1, 1) == 0.0
    assert buckets.reserve("a", 1, 1) == 1.0


def test_full_buckets_are_forgotten_and_memory_stays_bounded() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    for i in range(1000):
        buckets.reserve(f"route-{i}", 10, 1)
    assert len(buckets) == 1000
    buckets.reserve("busy", 0.001, 1)
    buckets.reserve("busy", 0.001, 1)  # in debt for a long time: must be kept
    clock.now += TokenBuckets.SWEEP_EVERY + 1
    buckets.reserve("route-0", 10, 1)  # triggers the sweep
    assert len(buckets) == 2  # "busy" and the fresh "route-0"
    assert (
        buckets.reserve("busy", 0.001, 1) is not None and buckets.reserve("busy", 0.001, 1) > 1000
    )
