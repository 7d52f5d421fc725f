#!/usr/bin/env python3
"""limit-count end to end: ``policy: local`` against ``policy: redis``, with 1 and 2 workers,
measured in one session with the shared reference tool ``a6measure`` (or ``a6-runner
bench``: ``--driver bench``). With hiredis installed, the redis cells are measured a
second time with hiredis hidden, so its effect shows in the same run.

    .venv/bin/python bench/limit_count.py               # ~1 minute with the defaults

Starts its own redis-server (Debian's package) on a free 127.0.0.1 port, no
persistence, and stops it by PID. Every call passes (count 10**9, key remote_addr): a
Rewrite carrying the three X-RateLimit-* headers. redis-server's own CPU per call is
its CPU time over the commands it ran (one EVALSHA per call). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A6MEASURE = os.environ.get("A6MEASURE", str(ROOT.parent / "shared" / "tools" / "a6measure"))
RUNNER = str(ROOT / ".venv" / "bin" / "a6-runner")
RESULT_RE = re.compile(r"(\w+)=(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(port: int, *words: str) -> str:
    """One command over a raw socket (RESP): this script needs nothing but the stdlib."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"*{len(words)}\r\n".encode()
            + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words)
        )
        data = b""
        while True:
            chunk = s.recv(65536)
            data += chunk
            if not chunk or (data.startswith(b"$") and data.count(b"\r\n") >= 2):
                break
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
        return data.decode(errors="replace")


def redis_cpu_and_commands(pid: int, port: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    info = redis_command(port, "INFO", "stats")
    found = re.search(r"total_commands_processed:(\d+)", info)
    return cpu, int(found.group(1)) if found else 0


def measure(
    argv_runner: list[str], conf: dict[str, object], args: argparse.Namespace
) -> dict[str, str]:
    common = ["--scenario", "say", "--plugin", "limit-count", "--conf", json.dumps(conf)]
    common += ["--expect", "rewrite", "--conns", str(args.conns)]
    common += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    if args.driver == "a6measure":
        argv = [A6MEASURE, *common, "--", *argv_runner]
    else:
        argv = [RUNNER, "bench", *common, "--", *argv_runner]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return dict(RESULT_RE.findall(line))
    sys.stderr.write(f"no RESULT from {argv}:\n{out.stdout}\n{out.stderr}\n")
    return {"rps": "0", "errors": "?"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--driver", choices=("a6measure", "bench"), default="a6measure")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2, help="measure every cell this many times")
    args = p.parse_args()

    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="a6runner-bench-")
    port = free_port()
    redis = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if "PONG" in redis_command(port, "PING"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        # hiredis hidden: an importable "hiredis" that fails, first on the path
        hide = Path(workdir) / "no_hiredis"
        hide.mkdir()
        (hide / "hiredis.py").write_text("raise ImportError('hidden by bench/limit_count.py')\n")
        try:
            import hiredis  # noqa: F401

            has_hiredis = True
        except ImportError:
            has_hiredis = False

        base = {"count": 10**9, "time_window": 3600, "key": "remote_addr"}
        redis_conf = {**base, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": port}
        cells: list[tuple[str, list[str], dict[str, object]]] = []
        for workers in (1, 2):
            run = [RUNNER, "run", "--workers", str(workers)]
            cells.append((f"local, {workers}w", run, base))
            cells.append(
                (f"redis, {workers}w" + (" (hiredis)" if has_hiredis else ""), run, redis_conf)
            )
            if has_hiredis:
                hidden = ["env", f"PYTHONPATH={hide}", *run]
                cells.append((f"redis, {workers}w (no hiredis)", hidden, redis_conf))

        rows = []
        for round_ in range(args.rounds):
            for label, argv_runner, conf in cells:
                before = redis_cpu_and_commands(redis.pid, port)
                res = measure(argv_runner, conf, args)
                after = redis_cpu_and_commands(redis.pid, port)
                commands = after[1] - before[1]
                redis_us = (
                    (after[0] - before[0]) / commands * 1e6
                    if "redis" in label and commands
                    else None
                )
                rows.append((label, round_, res, redis_us))
                print(
                    f"{label:26} rps={res.get('rps')} p99={res.get('p99_us')} "
                    f"cpu/call={res.get('runner_cpu_us_per_call')} redis/call={redis_us} "
                    f"errors={res.get('errors')}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(
        f"limit-count end to end, {args.driver}, {args.conns} connections, {args.duration:g} s "
        f"measured after {args.warmup:g} s warm-up, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, {now}\n"
    )
    print(
        "| policy, workers | round | calls/s | µs per call (1 / calls/s) | p50 µs | p99 µs "
        "| runner CPU µs/call | redis-server CPU µs/call | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, round_, res, redis_us in rows:
        rps = float(res.get("rps", 0) or 0)
        print(
            f"| {label} | {round_ + 1} | {rps:,.0f} | {1e6 / rps if rps else float('nan'):.1f} | "
            f"{res.get('p50_us', '')} | {res.get('p99_us', '')} | "
            f"{res.get('runner_cpu_us_per_call', '')} | "
            f"{'' if redis_us is None else f'{redis_us:.1f}'} | {res.get('errors', '?')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
