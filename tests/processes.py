"""The processes of a spawned runner, read from /proc (a supervisor's workers are its
children), and waiting for what they do."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from a6runner.testing import RunnerProcess


def children(pid: int) -> set[int]:
    """The pids of ``pid``'s live child processes (of every thread of it)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def worker_pids(runner: RunnerProcess) -> set[int]:
    """The workers of a ``--workers N`` runner: its supervisor's children."""
    return children(runner.process.pid)


# Seconds an expected event (a log line, a file, a process) may take on a busy machine
# before a test that waits for it fails: generous, since nothing here is timed.
WAIT = 60.0


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Return once ``check()`` is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.01)


def wait_for_log(runner: RunnerProcess, text: str, count: int = 1) -> None:
    """Return once ``text`` is in ``runner``'s log ``count`` times."""
    wait_until(lambda: runner.log().count(text) >= count, f"{count} x {text!r} in the log")
