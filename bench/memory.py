#!/usr/bin/env python3
"""Memory of a serving runner, per process: start each runner command as APISIX starts
it, make a few calls on a few connections (so every worker has served), then read each
process's VmRSS, RssAnon, RssFile (/proc/PID/status) and Pss (smaps_rollup: shared pages
split between the processes that share them; forked workers share most of theirs with
the supervisor). Several commands are measured in turn, ``--reps`` rounds in rotating
order, and every round is printed (RSS hardly moves between rounds of one command).

    .venv/bin/python bench/memory.py                            # this checkout, 2 workers
    .venv/bin/python bench/memory.py --runner before=/tmp/old/bin/a6-runner \\
        --runner after=.venv/bin/a6-runner --workers 2 --reps 3

Figures depend on the install: an editable install (``make install``) imports pathlib
and urllib at interpreter start for its finder; a wheel install does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from a6runner.testing import spawn_runner

ROOT = Path(__file__).resolve().parent.parent
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
FIELDS = ("VmRSS", "RssAnon", "RssFile")
CONNECTIONS = 4  # each worker gets some: a fresh connection goes to whichever accepts it
CALLS_PER_CONNECTION = 50


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(x) for x in (tid / "children").read_text().split())
    return sorted(out)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and Pss of one process, KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            found[name] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            found["Pss"] = int(line.split()[1])
    return found


def measure(command: str, workers: int) -> list[tuple[str, dict[str, int]]]:
    """(role, memory) of every process of one runner, the supervisor first."""
    with spawn_runner(["--workers", str(workers)], command=[command, "run"]) as runner:
        clients = [runner.client() for _ in range(CONNECTIONS)]
        try:
            for i, apisix in enumerate(clients):
                token = apisix.prepare_conf([("say", {"body": "hello"})], key=f"memory-{i}")
                for _ in range(CALLS_PER_CONNECTION):
                    assert apisix.http_req_call(token).body == b"hello"
            time.sleep(0.2)
            pid = runner.process.pid
            workers_pids = children(pid) if workers > 1 else []
            roles = [("supervisor" if workers_pids else "runner", pid)]
            roles += [(f"worker {i}", p) for i, p in enumerate(workers_pids)]
            found = [(role, memory_kib(p)) for role, p in roles]
        finally:
            for apisix in clients:
                apisix.close()
        runner.stop()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runner",
        action="append",
        metavar="NAME=PATH",
        help="an a6-runner script to measure (repeatable; default: this checkout's)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    runners = [r.split("=", 1) if "=" in r else [r, r] for r in (args.runner or [RUNNER])]
    print(f"--workers {args.workers}; KiB; Pss: proportional share of shared pages")
    print(
        f"{'runner':<12} {'rep':>3} {'process':<11} "
        + " ".join(f"{f:>8}" for f in (*FIELDS, "Pss"))
    )
    for rep in range(args.reps):
        shift = rep % len(runners)
        for name, command in runners[shift:] + runners[:shift]:
            for role, mem in measure(command, args.workers):
                values = " ".join(f"{mem.get(f, 0):>8,}" for f in (*FIELDS, "Pss"))
                print(f"{name:<12} {rep + 1:>3} {role:<11} {values}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
