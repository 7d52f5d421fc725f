#!/usr/bin/env python3
"""Ours against a peer runner, same run: a6runner native with 2 workers and with 1, pure
Python with 1 worker, the peer runner (any command, e.g. the Go runner in production mode)
and echo_limit (the socket round-trip limit), every cell measured by the shared driver
``a6measure``. Cells are interleaved: for each repetition, scenario and connection count,
every runner is measured back to back (the order rotates from one repetition to the
next), so a change in the machine's load hits them all alike. Prints a Markdown table of
medians over the repetitions, with the load average before each repetition.

    .venv/bin/python bench/peer_table.py --peer '/work/peer/go-runner run -m prod'
    .venv/bin/python bench/peer_table.py --peer 'CMD' --reps 2 --conns 16 --scenarios say

The peer is started exactly as a6measure starts any runner (APISIX_LISTEN_ADDRESS,
APISIX_CONF_EXPIRE_TIME), with a scratch directory as its working directory (the Go
runner writes ./logs/runner.log in production mode). This script does not build it.
Besides a6measure's figures (largest process RSS), it samples the whole runner tree's RSS
(supervisor + workers) from /proc while the cell runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A6MEASURE = os.environ.get("A6MEASURE", str(ROOT.parent / "shared" / "tools" / "a6measure"))
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
SCENARIOS = ("say", "rewrite-headers", "resp-rewrite", "resp-filter-body", "noop")
OURS: dict[str, list[str]] = {
    "native-2w": [RUNNER, "run", "--workers", "2"],
    "native-1w": [RUNNER, "run"],
    "pure-1w": ["env", "A6_NO_EXTENSIONS=1", RUNNER, "run"],
}
RESULT_RE = re.compile(r"(\w+)=(\S+)")
# writes the runner's pid where this script can find it, then becomes the runner
PID_WRAPPER = 'echo $$ >"$0"; exec "$@"'


def tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss(threading.Thread):
    """Samples the summed RSS of the runner's process tree until stopped."""

    def __init__(self, pidfile: Path) -> None:
        super().__init__(daemon=True)
        self.pidfile, self.total_kb, self.procs = pidfile, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            try:
                pid = int(self.pidfile.read_text())
            except (OSError, ValueError):
                continue
            pids = tree(pid)
            total = sum(rss_kb(p) for p in pids)
            if total > self.total_kb:
                self.total_kb, self.procs = total, len(pids)


def measure(
    name: str, cmd: list[str] | None, scenario: str, conns: int, args: argparse.Namespace
) -> dict[str, str]:
    argv = [A6MEASURE, "--scenario", scenario, "--conns", str(conns)]
    argv += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    with tempfile.TemporaryDirectory(prefix="a6peer.") as scratch:
        pidfile = Path(scratch) / "runner.pid"
        if cmd is None:  # echo_limit: no reply checks, any action
            argv += ["--echo", "--no-id-check", "--expect", "any"]
        else:
            argv += ["--", "sh", "-c", PID_WRAPPER, str(pidfile), *cmd]
        sampler = TreeRss(pidfile)
        sampler.start()
        out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=scratch)
        sampler.done.set()
        sampler.join()
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            res = dict(RESULT_RE.findall(line))
            if cmd is not None:
                res["tree_rss_kb"] = str(sampler.total_kb)
                res["tree_procs"] = str(sampler.procs)
            return res
    sys.stderr.write(f"{name}: no RESULT from {argv}:\n{out.stdout}\n{out.stderr}\n")
    return {"errors": "?"}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(rows: list[dict[str, str]], key: str) -> float:
    vals = []
    for r in rows:
        with contextlib.suppress(KeyError, ValueError):
            vals.append(float(r[key]))
    return statistics.median(vals) if vals else float("nan")


def git_head() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", required=True, help="the peer runner's command (one string)")
    p.add_argument("--peer-name", default="peer", help="its label in the table")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS[:4]))
    p.add_argument("--json", metavar="FILE", help="also write every RESULT as JSON here")
    args = p.parse_args()

    runners: dict[str, list[str] | None] = dict(OURS)
    runners[args.peer_name] = shlex.split(args.peer)
    runners["echo"] = None
    names = list(runners)
    results: dict[tuple[str, int, str], list[dict[str, str]]] = {}
    loads: list[str] = []
    started = datetime.datetime.now(datetime.timezone.utc)
    for rep in range(args.reps):
        loads.append(loadavg())
        print(f"rep {rep + 1}: load average {loads[-1]}", file=sys.stderr, flush=True)
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for scenario in args.scenarios:
            for conns in args.conns:
                for name in order:
                    res = measure(name, runners[name], scenario, conns, args)
                    res["rep"] = str(rep + 1)
                    results.setdefault((scenario, conns, name), []).append(res)
                    print(
                        f"  {scenario:17} {conns:3} {name:10} rps={res.get('rps')} "
                        f"p50={res.get('p50_us')} p99={res.get('p99_us')} "
                        f"cpu/call={res.get('runner_cpu_us_per_call')} "
                        f"steal={res.get('steal_pct')} errors={res.get('errors')}",
                        file=sys.stderr,
                        flush=True,
                    )

    print(
        f"Ours (a6runner {git_head()}) against {args.peer_name} (`{args.peer}`), a6measure, "
        f"{args.reps} interleaved reps of {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up; {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"started {started:%Y-%m-%d %H:%M} UTC; load average before each rep: "
        + "; ".join(loads)
        + "\n"
    )
    print(
        f"Medians over the reps. `/ {args.peer_name}` and `/ echo`: calls/s ratio. RSS: "
        "largest process / whole runner tree (supervisor + workers), MiB. steal: the "
        "machine's CPU steal during the cell (median).\n"
    )
    print(
        f"| scenario | conns | runner | calls/s | (min, max) | / {args.peer_name} | / echo "
        "| p50 µs | p99 µs | runner CPU µs/call | RSS MiB | steal % | errors |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in args.scenarios:
        for conns in args.conns:
            peer_rps = med(results[(scenario, conns, args.peer_name)], "rps")
            echo_rps = med(results[(scenario, conns, "echo")], "rps")
            for name in names:
                rows = results[(scenario, conns, name)]
                rps = med(rows, "rps")
                rpss = [float(r.get("rps", "nan")) for r in rows]
                errs = [r.get("errors", "?") for r in rows]
                errors = str(sum(int(e) for e in errs if e.isdigit()))
                if not all(e.isdigit() for e in errs):
                    errors += " (a run failed)"
                rss = ""
                if name != "echo":
                    largest, whole = med(rows, "runner_rss_kb"), med(rows, "tree_rss_kb")
                    rss = f"{largest / 1024:.0f} / {whole / 1024:.0f}"
                cells = [
                    scenario,
                    str(conns),
                    name,
                    f"{rps:,.0f}",
                    f"({min(rpss):,.0f}, {max(rpss):,.0f})",
                    f"{rps / peer_rps:.2f}",
                    f"{rps / echo_rps:.2f}",
                    f"{med(rows, 'p50_us'):.0f}",
                    f"{med(rows, 'p99_us'):.0f}",
                    f"{med(rows, 'runner_cpu_us_per_call'):.1f}",
                    rss,
                    f"{med(rows, 'steal_pct'):.0f}",
                    errors,
                ]
                print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "peer": args.peer,
                    "commit": git_head(),
                    "loads": loads,
                    "cells": [
                        {"scenario": s, "conns": c, "runner": n, "results": rows}
                        for (s, c, n), rows in results.items()
                    ],
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
