#!/usr/bin/env python3
"""End-to-end table: every scenario at 16 and 64 connections, for the native runner with
2 workers and with 1, the pure-Python runner (1 worker), and echo_limit (the socket
round-trip limit; its replies are not checked beyond the frame type), measured in one
session with the shared reference tool ``a6measure`` (or with ``a6-runner bench``:
``--driver bench``, which cannot start echo_limit but has scenarios a6load has not, such
as ``request-validation``). Prints a Markdown table.

    .venv/bin/python bench/e2e.py                      # ~6 minutes with the defaults
    .venv/bin/python bench/e2e.py --duration 8 --warmup 2 --conns 1 16 64
    .venv/bin/python bench/e2e.py --scenarios say noop --runners native-1w echo

a6load checks an HTTPRespCall reply's status (must be 200) and body size; a runner that
answers "status 0 = unchanged" fails that check on every call. When a response-phase
cell has errors, it is measured again with ``--no-id-check`` (no id / status / body
checks) and marked with a dagger, the first run's error count in the notes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from a6runner import bench

ROOT = Path(__file__).resolve().parent.parent
# the shared tools sit beside the repository (../shared/tools), in development and in CI
A6MEASURE = os.environ.get("A6MEASURE", str(ROOT.parent / "shared" / "tools" / "a6measure"))
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
SCENARIOS = tuple(bench.SCENARIOS)  # the driver's table: a6load has the rows marked in_a6load
IN_A6LOAD = tuple(n for n, s in bench.SCENARIOS.items() if s.in_a6load)
RUNNERS: dict[str, list[str] | None] = {
    "native-2w": [RUNNER, "run", "--workers", "2"],
    "native-1w": [RUNNER, "run"],
    "pure-1w": ["env", "A6_NO_EXTENSIONS=1", RUNNER, "run"],
    "echo": None,  # echo_limit
}
RESULT_RE = re.compile(r"(\w+)=(\S+)")


def measure(
    driver: str, runner: str, scenario: str, conns: int, duration: float, warmup: float, relax: bool
) -> dict[str, str]:
    cmd = RUNNERS[runner]
    if cmd is not None:
        cmd = [*cmd, *bench.SCENARIOS[scenario].runner_args]  # e.g. the prefetch plugins
    common = ["--scenario", scenario, "--conns", str(conns)]
    common += ["--duration", str(duration), "--warmup", str(warmup)]
    if relax or cmd is None:
        common.append("--no-id-check")
    if cmd is None:  # echo_limit answers every HTTPReqCall with a Stop
        common += ["--expect", "any"]
    if driver == "a6measure":
        argv = [A6MEASURE, *common, *(["--echo"] if cmd is None else ["--", *cmd])]
    else:
        if cmd is None:
            raise SystemExit("--driver bench cannot start echo_limit; use a6measure for it")
        argv = [RUNNER, "bench", *common, "--", *cmd]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return dict(RESULT_RE.findall(line))
    sys.stderr.write(f"no RESULT from {argv}:\n{out.stdout}\n{out.stderr}\n")
    return {"rps": "0", "errors": "?", "p99_us": "nan"}


def fnum(v: str | None, fmt: str) -> str:
    try:
        return format(float(v or "nan"), fmt)
    except ValueError:
        return str(v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--driver", choices=("a6measure", "bench"), default="a6measure")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, nargs="+", default=[16, 64])
    p.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"{', '.join(SCENARIOS)}; default: all (a6measure: {', '.join(IN_A6LOAD)})",
    )
    p.add_argument("--runners", nargs="+", choices=list(RUNNERS), default=list(RUNNERS))
    p.add_argument("--json", metavar="FILE", help="also write every RESULT as JSON here")
    args = p.parse_args()
    if args.scenarios is None:
        args.scenarios = list(IN_A6LOAD if args.driver == "a6measure" else SCENARIOS)
    elif args.driver == "a6measure" and set(args.scenarios) - set(IN_A6LOAD):
        missing = ", ".join(sorted(set(args.scenarios) - set(IN_A6LOAD)))
        p.error(f"a6load has no scenario {missing}: measure it with --driver bench")

    rows: list[tuple[str, int, str, dict[str, str], bool, str]] = []
    for scenario in args.scenarios:
        for conns in args.conns:
            for runner in args.runners:
                res = measure(
                    args.driver, runner, scenario, conns, args.duration, args.warmup, False
                )
                relaxed, strict_errors = False, res.get("errors", "?")
                if scenario.startswith("resp-") and strict_errors not in ("0", "?"):
                    res = measure(
                        args.driver, runner, scenario, conns, args.duration, args.warmup, True
                    )
                    relaxed = True
                rows.append((scenario, conns, runner, res, relaxed, strict_errors))
                print(
                    f"{scenario:17} {conns:3} {runner:10} rps={res.get('rps')} "
                    f"p99={res.get('p99_us')} cpu/call={res.get('runner_cpu_us_per_call')} "
                    f"errors={res.get('errors')}{' (relaxed)' if relaxed else ''}",
                    file=sys.stderr,
                    flush=True,
                )

    echo = {(s, c): float(r.get("rps", 0) or 0) for s, c, run, r, _, _ in rows if run == "echo"}
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(
        f"End to end, {args.driver}, {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, {now}\n"
    )
    print(
        "| scenario | conns | runner | calls/s | / echo | p99 µs "
        "| runner CPU µs/call | RSS MiB (largest process) | errors |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    notes = []
    for scenario, conns, runner, res, relaxed, strict_errors in rows:
        rps = float(res.get("rps", 0) or 0)
        e = echo.get((scenario, conns))
        ratio = f"{rps / e:.2f}" if e and runner != "echo" else ("1" if runner == "echo" else "")
        rss = res.get("runner_rss_kb")
        rss_mib = f"{int(rss) / 1024:.0f}" if rss and rss.isdigit() and runner != "echo" else ""
        cpu = res.get("runner_cpu_us_per_call")  # for echo: echo_limit's own CPU
        mark = " †" if relaxed else ""
        if relaxed:
            notes.append(f"{scenario}/{conns}/{runner}: {strict_errors} errors with the checks on")
        print(
            f"| {scenario} | {conns} | {runner}{mark} | {rps:,.0f} | {ratio} | "
            f"{fnum(res.get('p99_us'), '.0f')} | {fnum(cpu, '.1f') if cpu else ''} | "
            f"{rss_mib} | {res.get('errors', '?')} |"
        )
    if notes:
        print(
            "\n† measured with --no-id-check (no id/status/body checks) because a6load's "
            "strict run counted every reply as an error:"
        )
        for n in notes:
            print(f"- {n}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                [
                    {"scenario": s, "conns": c, "runner": r, "relaxed": rx, "result": res}
                    for s, c, r, res, rx, _ in rows
                ],
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
