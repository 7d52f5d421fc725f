"""Whether the machine's CPUs are contended, for ``--busy-poll``: polling the sockets
instead of sleeping only pays while a CPU is free; when tasks are already waiting for one
(APISIX's own workers, the other runner workers), the polling takes their time.

Linux's pressure stall information says it: ``/proc/pressure/cpu``'s ``some ... total=``
counts the microseconds during which at least one runnable task waited for a CPU. Over
each sample period (read at most every PRESSURE_SAMPLE seconds, when the server is about
to poll), a share above PRESSURE_LIMIT counts as contended. Where the file cannot be read
(not Linux, a kernel without PSI, a sandbox hiding /proc), nothing counts as contended:
``--busy-poll`` then polls as asked.
"""

from __future__ import annotations

CPU_PRESSURE = "/proc/pressure/cpu"
PRESSURE_SAMPLE = 0.5  # seconds between two reads of the file, at most
PRESSURE_LIMIT = 0.1  # contended: some task waited for a CPU this share of the time


class CpuPressure:
    """``contended(now)``: whether, over the last sample period, tasks waited for a CPU
    more than PRESSURE_LIMIT of the time. ``now`` is a monotonic clock in seconds."""

    def __init__(self, path: str = CPU_PRESSURE) -> None:
        self.path = path
        self.available = True  # False once the file could not be read: never again
        self._total: int | None = None  # stall microseconds at the last sample
        self._sampled_at = float("-inf")
        self._contended = False

    def contended(self, now: float) -> bool:
        if not self.available or now - self._sampled_at < PRESSURE_SAMPLE:
            return self._contended
        total = self._read()
        if total is None:
            self.available = False
            self._contended = False
            return False
        if self._total is not None:
            waited = (total - self._total) / 1e6
            self._contended = waited > PRESSURE_LIMIT * (now - self._sampled_at)
        self._total = total
        self._sampled_at = now
        return self._contended

    def _read(self) -> int | None:
        """The ``some`` line's ``total=``, or None when there is none to read."""
        try:
            with open(self.path, "rb") as f:
                first = f.readline()
        except OSError:
            return None
        if not first.startswith(b"some "):
            return None
        _, found, total = first.rpartition(b" total=")
        if not found or not total.strip().isdigit():
            return None
        return int(total)
