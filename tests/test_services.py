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


def test_a_changed_rate_or_burst_starts_a_new_bucket() -> None:
    buckets = TokenBuckets(FakeClock())
    assert buckets.reserve("k", 1, 1) == 0.0  # empty now
    assert buckets.reserve("k", 1, 5) == 0.0  # the burst changed: a new, full bucket
    assert buckets.reserve("k", 2, 5) == 0.0  # the rate changed: again
    assert [buckets.reserve("k", 2, 5) for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert buckets.reserve("k", 2, 5) == 0.5


def test_the_sweep_runs_once_every_sweep_interval_and_no_sooner() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    buckets.reserve("early", 100, 1)
    clock.advance(TokenBuckets.SWEEP_EVERY)  # exactly due
    buckets.reserve("due", 100, 1)
    assert len(buckets) == 1  # "early" had refilled: forgotten
    clock.advance(1)  # "due" has refilled too, but the next sweep is a minute away
    buckets.reserve("later", 100, 1)
    assert len(buckets) == 2
    assert buckets.forget_full() == 1  # by hand, on the bucket clock: "due" goes
    assert len(buckets) == 1  # "later" was emptied this very moment


def test_a_partly_refilled_bucket_lets_a_caller_through_at_once() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    assert [buckets.reserve("k", 1, 2) for _ in range(2)] == [0.0, 0.0]
    clock.advance(1.5)  # 1.5 tokens back: one caller goes at once, half a token is left
    assert buckets.reserve("k", 1, 2) == 0.0
    assert buckets.reserve("k", 1, 2) == pytest.approx(0.5)


def test_slow_buckets_are_forgotten_too_once_full() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(clock)
    buckets.reserve("slow", 0.5, 1)  # refills in 2 s
    buckets.reserve("never", 0, 1)  # rate 0: never refills, never forgotten
    clock.advance(TokenBuckets.SWEEP_EVERY)
    assert buckets.forget_full() == 1
    assert len(buckets) == 1 and buckets.reserve("never", 0, 1) is None
