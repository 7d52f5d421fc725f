"""What a run measured: the latency histogram (a6load's buckets), percentiles, error
counts, and merging the results of several driver processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HIST_RES_NS = 100
HIST_N = 2_000_000  # 100 ns buckets up to 200 ms
HIST2_RES_NS = 100_000  # then 100 us buckets


def histogram(latencies_ns: Sequence[int]) -> dict[int, int]:
    """Sparse histogram {bucket: count}; bucket < HIST_N is 100 ns wide, above 100 us."""
    hist: dict[int, int] = {}
    get = hist.get
    for ns in latencies_ns:
        b = ns // HIST_RES_NS
        if b >= HIST_N:
            b = HIST_N + ns // HIST2_RES_NS
        hist[b] = get(b, 0) + 1
    return hist


def _bucket_mid_us(b: int) -> float:
    if b < HIST_N:
        return (b * HIST_RES_NS + HIST_RES_NS / 2) / 1000.0
    return ((b - HIST_N) * HIST2_RES_NS + HIST2_RES_NS / 2) / 1000.0


def percentile_us(hist: dict[int, int], p: float) -> float:
    """As a6load: the midpoint of the bucket holding the int(p * total)-th latency."""
    total = sum(hist.values())
    if not total:
        return 0.0
    want = min(int(p * total), total - 1)
    acc = 0
    for b in sorted(hist):
        acc += hist[b]
        if acc > want:
            return _bucket_mid_us(b)
    return 0.0  # not reached


ERROR_KINDS = (
    "err_bad_request",
    "err_service_unavailable",
    "err_conf_token_not_found",
    "err_other",
    "bad_type",
    "bad_id",
    "bad_action",
    "bad_payload",
    "conn_closed",
    "timeouts",
    "reconnects",  # not an error by itself: the close that caused it is
)


@dataclass
class DriverResult:
    """What one driver process measured (merged over processes by ``merge``)."""

    conns: int = 0
    calls: int = 0
    extra: int = 0  # ExtraInfo questions answered
    round_trips: int = 0  # reads that carried ExtraInfo questions (one answer write each)
    errors: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    hist: dict[int, int] = field(default_factory=dict)
    lat_max_ns: int = 0
    lat_sum_ns: int = 0
    elapsed_s: float = 0.0  # the measured window
    rps: float = 0.0  # calls / elapsed (summed over processes)
    driver_cpu_s: float = 0.0  # user + system CPU of the driver process(es) in the window
    inflight_at_stop: int = 0
    alive_at_stop: int = 0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["hist"] = [[b, n] for b, n in self.hist.items()]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DriverResult:
        d = dict(d)
        d["hist"] = {int(b): int(n) for b, n in d["hist"]}
        return cls(**d)


def merge(results: Sequence[DriverResult]) -> DriverResult:
    out = DriverResult()
    for r in results:
        out.conns += r.conns
        out.calls += r.calls
        out.extra += r.extra
        out.round_trips += r.round_trips
        out.errors += r.errors
        for k, v in r.counts.items():
            out.counts[k] = out.counts.get(k, 0) + v
        for b, n in r.hist.items():
            out.hist[b] = out.hist.get(b, 0) + n
        out.lat_max_ns = max(out.lat_max_ns, r.lat_max_ns)
        out.lat_sum_ns += r.lat_sum_ns
        out.elapsed_s = max(out.elapsed_s, r.elapsed_s)
        out.rps += r.rps
        out.driver_cpu_s += r.driver_cpu_s
        out.inflight_at_stop += r.inflight_at_stop
        out.alive_at_stop += r.alive_at_stop
        out.messages.extend(r.messages)
    return out
