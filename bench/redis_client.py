#!/usr/bin/env python3
"""The runner's Redis path on its own: CPU µs per call of ``RedisStores.count`` (one
EVALSHA of the counter script through redis-py), with and without hiredis, against a
bare asyncio stream sending the same EVALSHA (the floor). Processes alternate with and
without hiredis so that both see the same machine. Prints a Markdown table.

    .venv/bin/python bench/redis_client.py            # ~1 minute

Starts its own redis-server on a free 127.0.0.1 port (no persistence), stops it by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limit_count import free_port, redis_command


async def _stores(port: int, calls: int, concurrency: int) -> float:
    from a6runner import LimitPolicy
    from a6runner._redis import RedisStores

    target = LimitPolicy.from_conf(
        {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": port}
    ).redis
    assert target is not None
    stores = RedisStores()
    await stores.count(target, "bench", 10**9, 3600, 1)

    async def caller() -> None:
        for _ in range(calls // concurrency):
            await stores.count(target, "bench", 10**9, 3600, 1)

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    spent = time.process_time() - started
    await stores.aclose()
    return spent / calls * 1e6


async def _bare(port: int, calls: int, concurrency: int) -> float:
    from a6runner._redis import COUNT

    words = ["EVALSHA", COUNT.sha, "1", "bench", str(10**9), "3600000", "1"]
    command = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w)}\r\n{w}\r\n".encode() for w in words
    )
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]

    async def caller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(calls // concurrency):
            writer.write(command)
            await reader.readline()  # *3
            for _ in range(3):
                await reader.readline()

    started = time.process_time()
    await asyncio.gather(*(caller(r, w) for r, w in streams))
    spent = time.process_time() - started
    for _, w in streams:
        w.close()
    return spent / calls * 1e6


def child(port: int, kind: str, calls: int, concurrency: int, runs: int) -> None:
    import uvloop

    measure = _bare if kind == "bare" else _stores
    values = [uvloop.run(measure(port, calls, concurrency)) for _ in range(runs)]
    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "python"
    print(json.dumps({"kind": kind, "parser": parser, "median": statistics.median(values)}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--calls", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--runs", type=int, default=5, help="runs per process (median)")
    p.add_argument("--child", nargs=2, metavar=("PORT", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.calls, args.concurrency, args.runs)
        return 0

    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="a6runner-bench-")
    hide = Path(workdir) / "no_hiredis"
    hide.mkdir()
    (hide / "hiredis.py").write_text("raise ImportError('hidden by bench/redis_client.py')\n")
    port = free_port()
    redis = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows = []
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
        base = [sys.executable, __file__, "--calls", str(args.calls), "--runs", str(args.runs)]
        base += ["--concurrency", str(args.concurrency), "--child", str(port)]
        for pair in range(args.pairs):
            results = {}
            for label, kind, env in (
                ("hiredis", "stores", None),
                ("no hiredis", "stores", {"PYTHONPATH": str(hide)}),
                ("bare stream", "bare", None),
            ):
                out = subprocess.run(
                    [*base, kind], capture_output=True, text=True, check=True,
                    env=None if env is None else {**__import__("os").environ, **env},
                )  # fmt: skip
                results[label] = json.loads(out.stdout)
            rows.append(results)
            print(
                f"pair {pair + 1}: "
                + ", ".join(f"{k} {v['median']:.1f} ({v['parser']})" for k, v in results.items()),
                file=sys.stderr,
                flush=True,
            )
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"CPU µs per call, {args.concurrency} callers at once, {args.calls} calls, median of "
        f"{args.runs} runs per process\n"
    )
    print("| pair | RedisStores.count, hiredis | RedisStores.count, no hiredis | bare stream |")
    print("|---:|---:|---:|---:|")
    for i, r in enumerate(rows):
        cells = [f"{r[k]['median']:.1f}" for k in ("hiredis", "no hiredis", "bare stream")]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    medians = [
        statistics.median(r[k]["median"] for r in rows)
        for k in ("hiredis", "no hiredis", "bare stream")
    ]
    print("| median | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
    faster = sum(r["hiredis"]["median"] < r["no hiredis"]["median"] for r in rows)
    print(f"\nhiredis lower in {faster} of {len(rows)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
