#!/usr/bin/env python3
"""Soak: is each worker's RSS flat over a million calls? For every scenario, one runner
(``a6-runner run --workers 2`` as APISIX starts it) is driven by the project's driver
(``a6-runner bench``'s, in this process) through the warm-up (its calls, two chunks at
least), then until the measured calls are done; every worker's RSS is read from /proc
about once a second. It reports, per worker, the first sample after the warm-up, the
last, the min and the max, the drift (last against first) and the largest excursion
from the first; it fails (exit 1) when the drift or an excursion exceeds the tolerance,
when a call fails, or when a worker was replaced or the runner died.

    .venv/bin/python bench/soak.py                       # 3 scenarios x 1M calls, ~4 min
    .venv/bin/python bench/soak.py --calls 200000 --scenarios say
    .venv/bin/python bench/soak.py --workers 1           # the single-process runner

The load runs in chunks of ``--chunk`` seconds: within a chunk the connections stay open
(as APISIX keeps them alive), and between chunks they are closed and opened again with
the same keys, so connection set-up and teardown are soaked too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from a6runner.bench import SCENARIOS
from a6runner.bench.driver import DriverConfig, Progress, drive
from a6runner.testing import spawn_runner

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
DEFAULT_SCENARIOS = ("say", "resp-filter-body", "request-validation")


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return sorted(out)


def cpu_s(pid: int) -> float:
    """utime + stime of one process, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass
class Series:
    """One process's RSS samples (KiB), taken after the warm-up."""

    role: str
    pid: int
    kb: list[int] = field(default_factory=list)
    cpu0: float = 0.0
    cpu_s: float = 0.0  # CPU seconds over the measured calls: each worker took its share

    def drift_pct(self) -> float:
        return 100.0 * (self.kb[-1] - self.kb[0]) / self.kb[0]

    def excursion_pct(self) -> float:
        """The sample farthest from the first, in % of the first (signed)."""
        far = max(self.kb, key=lambda v: abs(v - self.kb[0]))
        return 100.0 * (far - self.kb[0]) / self.kb[0]


@dataclass
class Soak:
    scenario: str
    calls: int = 0
    errors: int = 0
    warmup_calls: int = 0
    seconds: float = 0.0
    chunks: int = 0
    series: list[Series] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def soak(name: str, args: argparse.Namespace) -> Soak:
    sc = SCENARIOS[name]
    command = [RUNNER, "run", *(["--workers", str(args.workers)] if args.workers > 1 else [])]
    out = Soak(name)
    with spawn_runner(command=command, conf_expire_time=3600, startup_timeout=20) as runner:
        top = runner.process.pid
        deadline = time.monotonic() + 10
        while args.workers > 1 and len(children(top)) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the runner has not started {args.workers} workers")
            time.sleep(0.1)
        workers = children(top) if args.workers > 1 else [top]
        cfg = DriverConfig(
            sock=runner.socket_path,
            scenario=sc,
            conns=args.conns,
            plugin=sc.plugin,
            conf=sc.conf,
            expect=sc.expect,
            key_prefix="a6soak",
        )
        measuring = False

        def sample(_: Progress | None = None) -> None:
            if measuring:
                for s in out.series:
                    kb = rss_kb(s.pid)
                    if kb is not None:
                        s.kb.append(kb)

        def chunk() -> int:
            res = drive(cfg, 0.0, args.chunk, on_progress=sample)
            out.chunks += 1
            out.errors += res.errors
            if res.errors:
                out.problems.append(f"chunk {out.chunks}: {res.errors} errors {res.counts}")
            return res.calls

        # two chunks at least: the warm-up sees connections closed and opened again too
        while out.warmup_calls < args.warmup_calls or out.chunks < 2:
            out.warmup_calls += chunk()
        roles = [("worker", p) for p in workers] if args.workers > 1 else [("runner", top)]
        if args.workers > 1:
            roles.append(("supervisor", top))
        out.series = [Series(role, pid, cpu0=cpu_s(pid)) for role, pid in roles]
        measuring = True
        sample()
        t0 = time.monotonic()
        while out.calls < args.calls:
            out.calls += chunk()
            sample()
            if runner.process.poll() is not None:
                out.problems.append(f"runner exited with {runner.process.returncode}")
                break
        out.seconds = time.monotonic() - t0
        for s in out.series:
            s.cpu_s = cpu_s(s.pid) - s.cpu0
        if args.workers > 1 and children(top) != workers:
            out.problems.append(f"workers {workers} became {children(top)}: one was replaced")
    for s in out.series:
        if s.role == "supervisor":
            continue  # reported, not judged: it holds conf tokens and limits, no calls
        if len(s.kb) < 2:
            out.problems.append(f"{s.role} {s.pid}: fewer than 2 RSS samples")
        elif abs(s.drift_pct()) > args.tolerance or abs(s.excursion_pct()) > args.tolerance:
            out.problems.append(
                f"{s.role} {s.pid}: drift {s.drift_pct():+.2f} %, excursion "
                f"{s.excursion_pct():+.2f} % (tolerance ±{args.tolerance:g} %)"
            )
    return out


def git_head() -> str:
    res = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return res.stdout.strip() or "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=DEFAULT_SCENARIOS)
    p.add_argument("--calls", type=int, default=1_000_000, help="measured calls per scenario")
    p.add_argument("--warmup-calls", type=int, default=50_000, help="calls before the first sample")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--chunk", type=float, default=10.0, help="seconds per driver run")
    p.add_argument("--tolerance", type=float, default=5.0, help="allowed drift, %% (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write every sample as JSON here")
    args = p.parse_args()

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []
    for name in args.scenarios:
        print(f"{name}: soaking...", file=sys.stderr, flush=True)
        results.append(soak(name, args))
        r = results[-1]
        print(
            f"{name}: {r.calls:,} calls in {r.seconds:.0f} s, {r.errors} errors, "
            f"{'PASS' if not r.problems else 'FAIL: ' + '; '.join(r.problems)}",
            file=sys.stderr,
            flush=True,
        )
    runner = f"--workers {args.workers}" if args.workers > 1 else "1 process"
    print(
        f"Soak, a6runner {git_head()} ({runner}), {args.conns} connections, "
        f"{args.warmup_calls:,} warm-up calls (2 chunks at least) then {args.calls:,} measured "
        "calls per scenario, "
        f"{args.chunk:g} s chunks; {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}; started {started:%Y-%m-%d %H:%M} UTC, load average "
        f"{load}\n"
    )
    print(
        "| scenario | calls | calls/s | errors | process | samples | first KiB | last KiB "
        "| min KiB | max KiB | drift | excursion | CPU s | verdict |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        rate = f"{r.calls / r.seconds:,.0f}" if r.seconds else ""
        for s in r.series:
            if not s.kb:
                continue
            judged = s.role != "supervisor"
            bad = any(str(s.pid) in m for m in r.problems)
            verdict = ("FAIL" if bad else "ok") if judged else "(not judged)"
            print(
                f"| {r.scenario} | {r.calls:,} | {rate} | {r.errors} | {s.role} | {len(s.kb)} "
                f"| {s.kb[0]:,} | {s.kb[-1]:,} | {min(s.kb):,} | {max(s.kb):,} "
                f"| {s.drift_pct():+.2f} % | {s.excursion_pct():+.2f} % | {s.cpu_s:.1f} "
                f"| {verdict} |"
            )
    failed = [r for r in results if r.problems]
    for r in failed:
        for m in r.problems:
            print(f"\nFAIL {r.scenario}: {m}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                [
                    {
                        "scenario": r.scenario,
                        "calls": r.calls,
                        "errors": r.errors,
                        "seconds": r.seconds,
                        "problems": r.problems,
                        "series": [
                            {"role": s.role, "pid": s.pid, "cpu_s": s.cpu_s, "kb": s.kb}
                            for s in r.series
                        ],
                    }
                    for r in results
                ],
                f,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
