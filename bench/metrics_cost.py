#!/usr/bin/env python3
"""What ``--metrics`` costs end to end: each scenario with and without it, in interleaved
short runs of the shared driver ``a6measure`` (each run starts its own runner, as APISIX
does), the order flipped every repetition so that a drift of the machine's load falls on
both sides alike. Prints a Markdown table of medians, and the median of the paired
ratios (each repetition's run with metrics over its run without).

    .venv/bin/python bench/metrics_cost.py                       # ~2 minutes
    .venv/bin/python bench/metrics_cost.py --reps 9 --duration 4 --workers 2

The load-independent figure is bench/hotpath.py's (instructions per call, callgrind):

    .venv/bin/python bench/hotpath.py --compare say 2000
    .venv/bin/python bench/hotpath.py --compare --metrics say 2000
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A6MEASURE = os.environ.get("A6MEASURE", str(ROOT.parent / "shared" / "tools" / "a6measure"))
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
RESULT_RE = re.compile(r"(\w+)=(\S+)")
METRICS = ["--metrics", "127.0.0.1:0"]  # any free port: nothing scrapes during the run


def measure(scenario: str, conns: int, duration: float, warmup: float, runner: list[str]) -> dict:
    argv = [A6MEASURE, "--scenario", scenario, "--conns", str(conns)]
    argv += ["--duration", str(duration), "--warmup", str(warmup), "--", *runner]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            result = dict(RESULT_RE.findall(line))
            if result.get("errors") != "0" or result.get("runner_alive") != "yes":
                raise SystemExit(f"a failed run: {line}")
            return result
    raise SystemExit(f"no RESULT from {argv}:\n{out.stdout}\n{out.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["say", "resp-filter-body"])
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    base = [RUNNER, "run", "--workers", str(args.workers)]
    runs: dict[tuple[str, bool], list[dict]] = {}
    for rep in range(args.reps):
        for scenario in args.scenarios:
            order = (False, True) if rep % 2 == 0 else (True, False)
            for metrics in order:
                runner = base + (METRICS if metrics else [])
                res = measure(scenario, args.conns, args.duration, args.warmup, runner)
                runs.setdefault((scenario, metrics), []).append(res)
                label = "--metrics" if metrics else "plain"
                print(
                    f"rep {rep + 1}/{args.reps} {scenario} {label}: rps={res['rps']} "
                    f"cpu/call={res.get('runner_cpu_us_per_call')} steal={res.get('steal_pct')}",
                    file=sys.stderr,
                    flush=True,
                )

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{when}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.workers} worker(s), {args.conns} connections, "
        f"{args.reps} interleaved reps of {args.duration:g} s (after {args.warmup:g} s "
        "warm-up) per cell; medians\n"
    )
    print(
        "| scenario | calls/s plain | calls/s --metrics | paired ratio (median) "
        "| runner CPU µs/call plain | --metrics | steal % (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in args.scenarios:
        plain, metered = runs[scenario, False], runs[scenario, True]

        def median(results: list[dict], key: str) -> float:
            return statistics.median(float(r[key]) for r in results)

        ratios = [float(m["rps"]) / float(p["rps"]) for p, m in zip(plain, metered, strict=True)]
        steal = statistics.median(float(r["steal_pct"]) for r in plain + metered)
        print(
            f"| {scenario} | {median(plain, 'rps'):,.0f} | {median(metered, 'rps'):,.0f} "
            f"| {statistics.median(ratios):.3f} "
            f"| {median(plain, 'runner_cpu_us_per_call'):.1f} "
            f"| {median(metered, 'runner_cpu_us_per_call'):.1f} | {steal:.0f} |"
        )


if __name__ == "__main__":
    main()
