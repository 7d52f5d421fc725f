"""The runner under test as ``a6measure`` sees it: CPU and RSS of its whole process tree,
read from ``/proc``."""

from __future__ import annotations

import os
import time


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    return out


def tree_cpu_ticks(pid: int) -> int:
    """utime + stime (clock ticks) of the process and all its live descendants, as
    a6measure counts them."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
        total += int(fields[11]) + int(fields[12])  # 14 utime, 15 stime
    return total


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(largest VmRSS, largest VmHWM) in KiB over the process tree."""
    rss = hwm = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = max(rss, int(line.split()[1]))
                    elif line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            continue
    return rss, hwm


class RunnerWatch:
    """CPU of a process tree over the measured window (the drive() callbacks)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0 = self.t1 = 0
        self.w0 = self.w1 = 0.0
        self.rss_kb = self.hwm_kb = 0

    def start(self) -> None:
        self.t0 = tree_cpu_ticks(self.pid)
        self.w0 = time.monotonic()

    def end(self) -> None:
        self.t1 = tree_cpu_ticks(self.pid)
        self.w1 = time.monotonic()
        self.rss_kb, self.hwm_kb = tree_rss_kb(self.pid)

    def cores(self) -> float:
        wall = self.w1 - self.w0
        return (self.t1 - self.t0) / self.hz / wall if wall > 0 else 0.0
