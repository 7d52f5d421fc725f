"""``--max-worker-memory``: a worker whose own memory stays above the limit is replaced
with the zero-drop hand-off (pooled, always-busy connections lose no call), logged with
its size and counted in the metrics, with 1 and 2 workers. The time-based rules (checks in
a row, the minimum interval between recycles) are checked with a fake clock and a fake
memory reader."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pooled import PooledConnection, busy, progressed
from processes import WAIT, wait_for_log, wait_until
from test_metrics import scrape, value

from a6runner._workers import MemoryRecycler, private_memory
from a6runner.testing import spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

PLUGINS = str(Path(__file__).with_name("recycle_plugins.py"))
MIB = 1 << 20


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_over_the_limit_is_replaced_without_losing_a_call(
    tmp_path: Path, workers: int
) -> None:
    metrics = f"unix:{tmp_path}/metrics.sock"
    args = ["--workers", str(workers), "--max-worker-memory", "32", "--metrics", metrics]
    args += ["--no-bundled", "--no-entry-points", "--plugins", PLUGINS]
    with spawn_runner(args) as runner:
        wait_for_log(runner, "ready: its plugins started", count=workers)
        pool = [PooledConnection(runner.socket_path, "hoard", {}) for _ in range(8)]
        with busy(pool):
            wait_for_log(runner, "over --max-worker-memory 32 MiB: replacing it")
            wait_for_log(runner, "finished its calls and exited")
            wait_until(progressed(pool), "calls after the recycle")
        samples = scrape(metrics)
        log = runner.log()
        assert runner.stop(WAIT) == 0
    assert [c.failure for c in pool if c.failure] == []
    assert sum(len(c.answers) for c in pool) == sum(c.sent for c in pool)
    line = next(x for x in log.splitlines() if "over --max-worker-memory" in x)
    size = float(re.search(r"uses ([0-9.]+) MiB", line).group(1))  # type: ignore[union-attr]
    assert size > 32
    assert value(samples, "a6runner_worker_recycles_total") >= 1
    assert value(samples, "a6runner_worker_restarts_total") == 0  # a recycle is no restart
    # the recycled worker's connections went on with its successor
    assert any(len({pid for _, pid in c.answers}) > 1 for c in pool)
    assert "Traceback" not in log and "died" not in log


def test_a_worker_whose_successor_cannot_start_keeps_serving_until_one_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail = tmp_path / "fail"
    monkeypatch.setenv("A6_RECYCLE_FAIL", str(fail))
    args = ["--max-worker-memory", "32", "--no-bundled", "--no-entry-points", "--plugins"]
    with spawn_runner([*args, PLUGINS]) as runner:
        wait_for_log(runner, "ready: its plugins started")
        fail.touch()
        pool = [PooledConnection(runner.socket_path, "hoard", {}) for _ in range(4)]
        with busy(pool):
            wait_for_log(runner, "over --max-worker-memory 32 MiB: replacing it")
            wait_for_log(
                runner,
                "keeps serving: its replacement's plugin 'hoard' start raised "
                "ConnectionRefusedError: the cache server refused the connection; trying "
                "again in 0.5s",
            )
            wait_for_log(runner, "trying again in 1s")
            wait_until(progressed(pool), "calls served meanwhile")
            fail.unlink()
            wait_for_log(runner, "finished its calls and exited")
            wait_until(progressed(pool), "calls after the recycle")
        assert runner.stop(WAIT) == 0
        log = runner.log()
        until_done = log[: log.index("finished its calls and exited")]
        assert until_done.count("over --max-worker-memory") == 1  # one recycle, retried
    assert [c.failure for c in pool if c.failure] == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_memory_above_the_limit_at_every_check_in_a_row_recycles() -> None:
    sizes = {1: 10 * MIB, 2: 10 * MIB}
    clock = FakeClock()
    recycler = MemoryRecycler(32 * MIB, checks=3, interval=30, clock=clock, measure=sizes.get)
    assert recycler.check([1, 2]) is None
    sizes[1] = 40 * MIB
    assert recycler.check([1, 2]) is None  # 1 check above
    assert recycler.check([1, 2]) is None  # 2
    sizes[1] = 30 * MIB  # below once: it starts over
    assert recycler.check([1, 2]) is None
    sizes[1] = 40 * MIB
    assert recycler.check([1, 2]) is None
    assert recycler.check([1, 2]) is None
    assert recycler.check([1, 2]) == (1, 40 * MIB)  # the 3rd check in a row


def test_recycles_are_at_least_the_interval_apart_and_the_largest_goes_first() -> None:
    sizes = {1: 40 * MIB, 2: 50 * MIB, 3: 45 * MIB}
    clock = FakeClock()
    recycler = MemoryRecycler(32 * MIB, checks=2, interval=30, clock=clock, measure=sizes.get)
    assert recycler.check([1, 2, 3]) is None
    assert recycler.check([1, 2, 3]) == (2, 50 * MIB)  # the largest of those due
    for _ in range(5):  # within the interval: nobody, however long they stay above
        clock.now += 5
        assert recycler.check([1, 3]) is None
    clock.now += 5  # 30 s after the last one
    assert recycler.check([1, 3]) == (3, 45 * MIB)
    clock.now += 60
    # a worker not offered (being replaced, or gone) loses its count: 1 was due
    assert recycler.check([]) is None
    assert recycler.check([1]) is None
    assert recycler.check([1]) == (1, 40 * MIB)


def test_a_worker_gone_meanwhile_is_skipped() -> None:
    def measure(pid: int) -> int:
        if pid == 1:
            raise FileNotFoundError(f"/proc/{pid}/smaps_rollup")
        return 40 * MIB

    recycler = MemoryRecycler(32 * MIB, checks=1, interval=30, clock=FakeClock(), measure=measure)
    assert recycler.check([1, 2]) == (2, 40 * MIB)


def test_without_smaps_rollup_the_flag_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from a6runner import _workers
    from a6runner._errors import ConfigError

    def missing(pid: int) -> int:
        raise FileNotFoundError(f"/proc/{pid}/smaps_rollup")

    monkeypatch.setattr(_workers, "private_memory", missing)
    with pytest.raises(ConfigError, match=r"--max-worker-memory reads /proc/PID/smaps_rollup"):
        _workers.check_memory_readable()


def test_private_memory_counts_what_the_process_wrote_not_what_it_shares() -> None:
    before = private_memory(os.getpid())
    kept = b"y" * (32 * MIB)
    assert private_memory(os.getpid()) - before >= 30 * MIB
    del kept
