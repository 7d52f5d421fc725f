"""Instructions per call on the runner's hot path, counted by callgrind: a figure that does
not depend on what else the machine is doing, for before/after comparisons of the server,
chain and kernels.

One connection object is fed whole call frames through ``data_received`` with a
transport that only keeps what is written (no socket, no event-loop wake-ups), so the
count covers framing, decode, the chain, the plugins and reply building — not the
kernel's socket work, which a6measure covers.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/hotpath.py say 2000      # prints nothing useful itself
    bench/hotpath.py --compare say 2000                 # runs callgrind twice (N and 0
                                                        # calls) and prints instr/call
    bench/hotpath.py --compare --metrics say 2000       # the same with --metrics on
    bench/hotpath.py --compare --process say 2000       # a real `a6-runner run` process
                                                        # under callgrind, called over its
                                                        # socket (uvloop, endpoint, timers)
    A6_NO_EXTENSIONS=1 bench/hotpath.py --a6load --compare say 2000

``--process`` counts the whole runner process (its user-space instructions: the kernel's
socket work is not counted) while a client in another process makes the calls, one at a
time; the same N and 0 calls subtraction gives the figure per call.

``--a6load`` sends a6load's calls instead (the a6measure scenarios' plugin confs, a
request of 13 headers and 3 args, a response of 8 headers), built once before the calls
so that the count is the runner's alone: in pure mode, building each frame with the
pure client-side builder would cost as much as the call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS: dict[str, tuple[str, str, Any]] = {
    # name: (call kind, plugin, conf)
    "say": ("req", "say", {"body": "hello"}),
    "rewrite": ("req", "request-body-rewrite", {"new_body": "rewritten"}),
    "resp-rewrite": ("resp", "response-rewrite", {"headers": {"X-A": "1"}}),
    "resp-filter-body": (
        "resp",
        "response-rewrite",
        {"filters": [{"regex": "hello", "scope": "global", "replace": "HELLO"}]},
    ),
}

# --a6load: a6load's scenarios and calls, as the project's own driver has them
# (a6runner.bench.scenarios: the same plugin confs, headers and args as a6load.c).
A6LOAD_NAMES = {"rewrite": "rewrite-headers"}  # this script's name -> the driver's
A6LOAD_FRAMES = 1000  # built up front whatever the number of calls, and sent in turn

HEADERS = [
    ("host", "api.example.com"),
    ("user-agent", "Mozilla/5.0"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("x-request-id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
]
RESP_BODY = b'{"id":123,"msg":"hello world"}\n' * 128


class _Transport:
    """Keeps the frames written; enough of asyncio.Transport for a Connection."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _drive(scenario: str, calls: int, metrics: bool = False, a6load: bool = False) -> int:
    from a6runner._confstore import ConfStore
    from a6runner._kernels import codec
    from a6runner._registry import build_registry
    from a6runner._server import Connection, Server
    from a6runner._services import LocalServices
    from a6runner.testing import decode_reply

    if a6load:
        from a6runner.bench import scenarios as bench

        row = bench.SCENARIOS[A6LOAD_NAMES.get(scenario, scenario)]
        kind = "req" if row.call_type == codec.RPC_HTTP_REQ_CALL else "resp"
        plugin, conf_json = row.plugin, row.conf
    else:
        kind, plugin, conf = SCENARIOS[scenario]
        conf_json = json.dumps(conf)
    registry = build_registry(bundled=True, entry_points=False)
    plugins = {n: r.plugin for n, r in registry.items()}
    observer = None
    if metrics:  # as `a6-runner run --metrics` serves (the endpoint itself is not driven)
        from a6runner._observe import Observer

        observer = Observer(metrics=True)
        plugins = observer.plugins(plugins)
    server = Server(None, ConfStore(plugins, 3600.0), LocalServices())  # type: ignore[arg-type]
    server._loop = asyncio.get_running_loop()
    if observer is not None:
        observer.attach(server)
    conn: Connection = server.connection_factory(server)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(codec.build_prepare_conf_req([(plugin, conf_json)], "k"))
    reply = transport.frames.pop()
    token = decode_reply(reply[0], reply[4:]).conf_token
    answer = codec.build_extra_info_resp(RESP_BODY)

    def build(i: int, args: list[tuple[str, str]], headers: list[tuple[str, str]]) -> bytes:
        if kind == "req":
            return codec.build_http_req_call_req(
                i, token, 0, "/api/v1/users/123", args, headers, b"\x7f\0\0\1"
            )
        return codec.build_http_resp_call_req(i, token, 200, headers)

    frames = []
    if a6load:
        headers = list(bench.REQ_HEADERS if kind == "req" else bench.RESP_HEADERS)
        frames = [build(i, list(bench.REQ_ARGS), headers) for i in range(A6LOAD_FRAMES)]
    for i in range(calls):
        frame = frames[i % A6LOAD_FRAMES] if a6load else build(i, [("page", "2")], HEADERS)
        conn.data_received(frame)
        while True:
            if transport.frames:
                out = transport.frames.pop()
                if out[0] == codec.RPC_EXTRA_INFO:
                    conn.data_received(answer)
                    continue
                if out[0] not in (codec.RPC_HTTP_REQ_CALL, codec.RPC_HTTP_RESP_CALL):
                    raise SystemExit(f"call {i}: error frame {out[:8]!r}")
                break
            await asyncio.sleep(0)
    return calls


def _instructions(scenario: str, calls: int, metrics: bool = False, a6load: bool = False) -> int:
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            scenario,
            str(calls),
            *(["--metrics"] if metrics else []),
            *(["--a6load"] if a6load else []),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(result.stderr)
    return int(match.group(1))


RUNNER = str(Path(sys.executable).with_name("a6-runner"))


def _process_instructions(scenario: str, calls: int, metrics: bool = False) -> int:
    """Instructions of an `a6-runner run` process (under callgrind) serving ``calls``."""
    from a6runner.testing import Client

    kind, plugin, conf = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as folder:
        sock = str(Path(folder) / "runner.sock")
        runner = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                RUNNER,
                "run",
                "--no-parent-watch",
                *(["--metrics", "127.0.0.1:0"] if metrics else []),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0", "APISIX_LISTEN_ADDRESS": f"unix:{sock}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not Path(sock).exists():
                if runner.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the runner did not start: {runner.stderr.read()}")  # type: ignore[union-attr]
                time.sleep(0.1)
            with Client(sock, timeout=60) as apisix:
                token = apisix.prepare_conf([(plugin, conf)])
                for i in range(calls):
                    if kind == "req":
                        reply = apisix.http_req_call(token, id=i, headers=HEADERS)
                    else:
                        reply = apisix.http_resp_call(token, id=i, headers=HEADERS, body=RESP_BODY)
                    if reply.error:
                        raise SystemExit(f"call {i}: {reply.error}")
        finally:
            runner.send_signal(signal.SIGTERM)
            _, err = runner.communicate(timeout=120)
    match = re.search(r"Collected : (\d+)", err)
    if match is None:
        raise SystemExit(err)
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("calls", type=int)
    parser.add_argument("--compare", action="store_true", help="instructions per call")
    parser.add_argument("--metrics", action="store_true", help="count as --metrics does")
    parser.add_argument(
        "--process", action="store_true", help="a real runner process (with --compare)"
    )
    parser.add_argument("--a6load", action="store_true", help="a6load's calls, built up front")
    args = parser.parse_args()
    if args.a6load and args.process:
        parser.error("--a6load counts in process only; drop --process")
    if not args.compare:
        asyncio.run(_drive(args.scenario, args.calls, args.metrics, args.a6load))
        return
    if args.process:
        base = _process_instructions(args.scenario, 0, args.metrics)
        total = _process_instructions(args.scenario, args.calls, args.metrics)
    else:
        base = _instructions(args.scenario, 0, args.metrics, args.a6load)
        total = _instructions(args.scenario, args.calls, args.metrics, args.a6load)
    label = f"{args.scenario}{' --metrics' if args.metrics else ''}"
    label += " (runner process)" if args.process else ""
    label += " (a6load)" if args.a6load else ""
    print(f"{label}: {(total - base) / args.calls:,.0f} instructions per call")


if __name__ == "__main__":
    main()
