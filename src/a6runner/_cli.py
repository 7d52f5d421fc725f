"""``a6-runner``: run the runner, list plugins, measure it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import A6Error
from ._registry import PluginLoadError, add_plugin_options, build_registry
from ._runner import run, version
from ._settings import DEFAULT_CALL_TIMEOUT, DEFAULT_FRAME_MEMORY, DEFAULT_STALL_WARNING, Limits


def _socket_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {value!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range: {value!r}")
    return mode


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 turns it off), not {value!r}")
    return seconds


def _mebibytes(value: str) -> int:
    n = _positive_int(value)
    return n << 20


def _metrics_address(value: str) -> str:
    from ._metrics import parse_metrics_address

    try:
        parse_metrics_address(value)
    except A6Error as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--metrics ")) from None
    return value


def _add_observability_options(p_run: argparse.ArgumentParser) -> None:
    """--metrics and --otel (README, Monitoring)."""
    group = p_run.add_argument_group("monitoring")
    group.add_argument(
        "--metrics",
        type=_metrics_address,
        metavar="ADDR",
        help="serve Prometheus metrics on /metrics and a health check on /healthz at "
        "HOST:PORT (e.g. 127.0.0.1:9091) or unix:/path (off by default; needs "
        "pip install 'a6runner[metrics]')",
    )
    group.add_argument(
        "--otel",
        action="store_true",
        help="an OpenTelemetry span per call and per plugin, exported as the OTEL_* "
        "variables say (needs pip install 'a6runner[otel]' and an SDK)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a6-runner", description=__doc__)
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="serve APISIX on APISIX_LISTEN_ADDRESS")
    p_run.add_argument("--listen", metavar="unix:PATH", help="overrides APISIX_LISTEN_ADDRESS")
    p_run.add_argument(
        "--conf-expire-time",
        type=float,
        metavar="SECONDS",
        help="overrides APISIX_CONF_EXPIRE_TIME (confs are kept 1.2 times as long)",
    )
    p_run.add_argument(
        "--socket-mode", type=_socket_mode, default=0o766, metavar="OCTAL", help="default 0766"
    )
    p_run.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes (default 1)"
    )
    p_run.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="event loop"
    )
    p_run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p_run.add_argument(
        "--socket-group",
        metavar="GROUP",
        help="give the socket file this group (with --socket-mode 0760, only that group's "
        "processes may connect)",
    )
    p_run.add_argument(
        "--call-timeout",
        type=_seconds,
        default=DEFAULT_CALL_TIMEOUT,
        metavar="SECONDS",
        help=f"end a call still running after this long (default {DEFAULT_CALL_TIMEOUT:g}, "
        "just under APISIX's 60 s; 0: never)",
    )
    p_run.add_argument(
        "--max-frame-memory",
        type=_mebibytes,
        default=DEFAULT_FRAME_MEMORY,
        metavar="MIB",
        help="memory for frames still arriving, per process; beyond it connections wait "
        f"their turn, unread (default {DEFAULT_FRAME_MEMORY >> 20})",
    )
    p_run.add_argument(
        "--stall-warning",
        type=_seconds,
        default=DEFAULT_STALL_WARNING,
        metavar="SECONDS",
        help="log a plugin that blocks the event loop this long "
        f"(default {DEFAULT_STALL_WARNING:g}; 0: off)",
    )
    p_run.add_argument(
        "--no-parent-watch",
        action="store_true",
        help="keep running when the process that started the runner exits (a runner "
        "started by hand under a process supervisor)",
    )
    add_plugin_options(p_run)
    _add_observability_options(p_run)

    p_plugins = sub.add_parser("plugins", help="list the registered plugins and their origin")
    add_plugin_options(p_plugins)

    # listed here for --help; main() hands them their arguments before parsing
    sub.add_parser("call", help="send one call to a runner, print the answer", add_help=False)
    sub.add_parser("bench", help="APISIX-like end-to-end load driver", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `call` and `bench` have their own parsers and imports: `a6-runner run` never loads them
    if argv[:1] == ["call"]:
        from ._call import main as call_main

        return call_main(argv[1:])
    if argv[:1] == ["bench"]:
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(
                listen=args.listen,
                conf_expire_time=args.conf_expire_time,
                workers=args.workers,
                plugin_paths=args.plugins,
                bundled=not args.no_bundled,
                entry_points=not args.no_entry_points,
                socket_mode=args.socket_mode,
                loop=args.loop,
                log_level=args.log_level,
                limits=Limits(args.call_timeout, args.max_frame_memory, args.stall_warning),
                socket_group=args.socket_group,
                parent_watch=not args.no_parent_watch,
                metrics=args.metrics,
                otel=args.otel,
            )
        if args.command == "plugins":
            registry = build_registry(
                paths=args.plugins,
                bundled=not args.no_bundled,
                entry_points=not args.no_entry_points,
            )
            width = max((len(n) for n in registry), default=4)
            for name in sorted(registry):
                print(f"{name:<{width}}  {registry[name].origin}")
            return 0
    except PluginLoadError as exc:
        print(f"a6-runner: error: {exc}", file=sys.stderr)
        return 2
    except (A6Error, OSError) as exc:
        print(f"a6-runner: error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
