"""The processes of a spawned runner, read from /proc: a supervisor's workers are its
children."""

from __future__ import annotations

import os

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
