"""``a6-runner bench``: the command line of the load driver."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from .._kernels import codec
from ..testing import RunnerProcess, spawn_runner
from .driver import DriverConfig, Progress, drive
from .procwatch import RunnerWatch
from .scenarios import ACT_ANY, SCENARIOS
from .stats import DriverResult, percentile_us

DESCRIPTION = "An APISIX-like end-to-end load driver for a plugin runner."
EPILOG = (
    "scenarios:\n"
    + "\n".join(
        f"  {s.name:<19} {s.desc}" + ("" if s.in_a6load else " (not in a6load)")
        for s in SCENARIOS.values()
    )
    + "\n\nexit status:\n  0  every call answered as expected\n"
    "  1  some calls failed, or the runner died\n  2  bad arguments"
)
EXPECT = {
    "stop": codec.ACTION_STOP,
    "rewrite": codec.ACTION_REWRITE,
    "none": codec.ACTION_NONE,
    "any": ACT_ANY,
}
SETTLE_S = 0.3  # as a6measure: after the socket appears, let every worker start listening


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sock", metavar="PATH", help="an already running runner's socket")
    p.add_argument("--scenario", choices=list(SCENARIOS), default="say")
    p.add_argument("--conns", type=int, default=16, help="connections (default 16)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (default 2)")
    p.add_argument("--procs", type=int, default=1, help="driver processes (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--plugin", help="override the scenario's plugin name")
    p.add_argument("--conf", help="override the scenario's plugin conf (JSON)")
    p.add_argument("--expect", choices=list(EXPECT), help="override the expected action")
    p.add_argument(
        "--no-id-check",
        action="store_true",
        help="don't check reply ids / response bodies (needed against echo_limit)",
    )
    p.add_argument("--resp-body-size", type=int, default=4096, help="ExtraInfo RespBody size")
    p.add_argument("--timeout", type=float, default=5.0, help="a slower call is a timeout error")
    p.add_argument("--runner-pid", type=int, help="with --sock: measure this process tree's CPU")
    p.add_argument("--label", default=None, help="runner label in the RESULT line")
    p.add_argument(
        "runner",
        nargs="*",
        metavar="-- RUNNER COMMAND",
        help="start this command as the runner (APISIX's environment), measure it, stop it",
    )


def format_progress(p: Progress, elapsed_s: float, warmup_s: float, duration_s: float) -> str:
    """The progress line: the warm-up, then the measured seconds, calls/s and errors."""
    if p.measured_s is None:
        return f"a6-runner bench: warming up {min(elapsed_s, warmup_s):.0f}/{warmup_s:g} s"
    rate = p.calls / p.measured_s if p.measured_s > 0 else 0.0
    return (
        f"a6-runner bench: {min(p.measured_s, duration_s):.1f}/{duration_s:g} s  "
        f"{rate:,.0f} calls/s  {p.calls:,} calls  {p.errors:,} errors"
    )


class ProgressLine:
    """The live progress line on a terminal, rewritten in place and erased at the end."""

    def __init__(self, stream: TextIO, warmup_s: float, duration_s: float) -> None:
        self.stream = stream
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.started = time.monotonic()
        self.width = 0

    def show(self, p: Progress) -> None:
        elapsed = time.monotonic() - self.started
        text = format_progress(p, elapsed, self.warmup_s, self.duration_s)
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


@contextlib.contextmanager
def _started(command: Sequence[str]) -> Iterator[RunnerProcess]:
    """The runner command started as APISIX and a6measure start it."""
    with spawn_runner(command=command, conf_expire_time=3600, startup_timeout=10) as runner:
        time.sleep(SETTLE_S)
        yield runner


def _stop(runner: RunnerProcess, timeout: float = 5.0) -> int:
    try:
        return runner.stop(timeout)
    except subprocess.TimeoutExpired:
        runner.process.kill()
        return runner.process.wait()


def run(args: argparse.Namespace) -> int:
    """The ``a6-runner bench`` subcommand."""
    if bool(args.sock) == bool(args.runner):
        print("a6-runner bench: give either --sock PATH or -- RUNNER COMMAND...", file=sys.stderr)
        return 2
    if args.conns < 1 or args.procs < 1 or args.duration <= 0 or args.warmup < 0:
        print(
            "a6-runner bench: --conns/--procs >= 1, --duration > 0, --warmup >= 0", file=sys.stderr
        )
        return 2
    sc = SCENARIOS[args.scenario]
    expect = EXPECT.get(args.expect or "", sc.expect)
    watch: RunnerWatch | None = None
    alive: bool | None = None
    exit_code: int | None = None
    label = args.label
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        with contextlib.ExitStack() as stack:
            sock = args.sock
            runner: RunnerProcess | None = None
            if args.runner:
                runner = stack.enter_context(_started(args.runner))
                sock = runner.socket_path
                watch = RunnerWatch(runner.process.pid)
                label = label or "runner"
            elif args.runner_pid:
                watch = RunnerWatch(args.runner_pid)
            cfg = DriverConfig(
                sock=sock,
                scenario=sc,
                conns=args.conns,
                plugin=args.plugin or sc.plugin,
                conf=args.conf or sc.conf,
                expect=expect,
                check_id=not args.no_id_check,
                resp_body_size=args.resp_body_size,
                timeout_s=args.timeout,
            )
            # on a terminal only: piped or captured, the output is the report alone
            line = ProgressLine(sys.stderr, args.warmup, args.duration)
            progress = line if sys.stderr.isatty() else None
            try:
                res = drive(
                    cfg,
                    args.warmup,
                    args.duration,
                    args.procs,
                    watch.start if watch else None,
                    watch.end if watch else None,
                    progress.show if progress else None,
                )
                if progress is not None:
                    progress.show(Progress(res.elapsed_s, res.calls, res.errors))
            finally:
                line.close()
                if runner is not None:
                    alive = runner.process.poll() is None
                    exit_code = _stop(runner)
                    if not (alive or exit_code == 0):
                        sys.stderr.write(runner.log()[-4000:])
    except (OSError, RuntimeError) as exc:
        print(f"a6-runner bench: error: {exc}", file=sys.stderr)
        return 1
    report = summarize(res, cfg, args, label or "-", watch, alive, exit_code)
    if args.json:
        print(json.dumps(report, indent=None))
    else:
        print_report(report, res)
    return 1 if res.errors or alive is False else 0


def summarize(
    res: DriverResult,
    cfg: DriverConfig,
    args: argparse.Namespace,
    label: str,
    watch: RunnerWatch | None,
    alive: bool | None,
    exit_code: int | None,
) -> dict[str, Any]:
    el = res.elapsed_s
    rep: dict[str, Any] = {
        "runner": label,
        "scenario": cfg.scenario.name,
        "plugin": cfg.plugin,
        "conns": cfg.conns,
        "procs": max(1, min(args.procs, cfg.conns)),
        "warmup_s": args.warmup,
        "measured_s": round(el, 3),
        "calls": res.calls,
        "rps": round(res.rps, 1),
        "p50_us": percentile_us(res.hist, 0.50),
        "p90_us": percentile_us(res.hist, 0.90),
        "p99_us": percentile_us(res.hist, 0.99),
        "p999_us": percentile_us(res.hist, 0.999),
        "max_us": res.lat_max_ns / 1000.0,
        "avg_us": round(res.lat_sum_ns / 1000.0 / res.calls, 1) if res.calls else 0.0,
        "errors": res.errors,
        "error_counts": res.counts,
        "extra_per_call": round(res.extra / res.calls, 2) if res.calls else 0.0,
        "round_trips_per_call": round(res.round_trips / res.calls, 2) if res.calls else 0.0,
        "driver_cpu": round(res.driver_cpu_s / el, 2) if el > 0 else 0.0,
        "driver_cpu_us_per_call": (
            round(res.driver_cpu_s * 1e6 / res.calls, 1) if res.calls else None
        ),
        "inflight_at_stop": res.inflight_at_stop,
    }
    if watch is not None:
        cores = watch.cores()
        rep["runner_cpu"] = round(cores, 3)
        rep["runner_cpu_us_per_call"] = round(cores * 1e6 / res.rps, 1) if res.rps > 0 else None
        rep["runner_rss_kb"] = watch.rss_kb
        rep["runner_hwm_kb"] = watch.hwm_kb
    if alive is not None:
        rep["runner_alive"] = alive
    if exit_code is not None:
        rep["runner_exit"] = exit_code
    if res.messages:
        rep["messages"] = res.messages
    return rep


def print_report(rep: dict[str, Any], res: DriverResult) -> None:
    for m in rep.get("messages", []):
        print(m, file=sys.stderr)
    print(
        f"a6-runner bench: scenario={rep['scenario']} plugin={rep['plugin']} "
        f"conns={rep['conns']} procs={rep['procs']} warmup={rep['warmup_s']}s "
        f"measured={rep['measured_s']:.2f}s"
    )
    print(
        f"  calls      {rep['calls']}  ({rep['rps']:.0f} calls/s)  "
        f"extra_info={res.extra} ({rep['extra_per_call']:.2f}/call, "
        f"{rep['round_trips_per_call']:.2f} round trips/call)"
    )
    print(
        f"  latency us p50={rep['p50_us']:.1f} p90={rep['p90_us']:.1f} p99={rep['p99_us']:.1f} "
        f"p99.9={rep['p999_us']:.1f} max={rep['max_us']:.1f} avg={rep['avg_us']:.1f}"
    )
    detail = " ".join(f"{k}={v}" for k, v in rep["error_counts"].items())
    print(f"  errors     {rep['errors']}  ({detail})")
    print(
        f"  driver cpu {rep['driver_cpu']:.2f} cores ({rep['driver_cpu_us_per_call']} us/call); "
        f"calls in flight at stop: {rep['inflight_at_stop']}"
    )
    extra = ""
    if "runner_cpu" in rep:
        print(
            f"  runner cpu {rep['runner_cpu']:.2f} cores, "
            f"{rep['runner_cpu_us_per_call']} us/call; "
            f"rss {rep['runner_rss_kb']} KiB (peak {rep['runner_hwm_kb']} KiB)"
        )
        extra = (
            f" runner_cpu_us_per_call={rep['runner_cpu_us_per_call']}"
            f" runner_rss_kb={rep['runner_rss_kb']}"
        )
    if "runner_alive" in rep:
        extra += f" runner_alive={'yes' if rep['runner_alive'] else 'DIED'}"
    print(
        f"RESULT runner={rep['runner']} scenario={rep['scenario']} conns={rep['conns']} "
        f"calls={rep['calls']} rps={rep['rps']:.0f} p50_us={rep['p50_us']:.1f} "
        f"p90_us={rep['p90_us']:.1f} p99_us={rep['p99_us']:.1f} max_us={rep['max_us']:.1f} "
        f"errors={rep['errors']} extra_per_call={rep['extra_per_call']:.2f} "
        f"driver_cpu={rep['driver_cpu']:.2f}{extra}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="a6-runner bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
