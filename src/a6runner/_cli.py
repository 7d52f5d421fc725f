"""The ``a6-runner`` command: run the runner, list its plugins, send one call, measure it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._errors import A6Error
from ._logging import FORMATS
from ._registry import PluginLoadError, add_plugin_options, build_registry
from ._runner import run, version
from ._settings import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MEMORY,
    DEFAULT_STALL_WARNING,
    MAX_BUSY_POLL,
    UNKNOWN_PLUGINS,
    Limits,
)

DESCRIPTION = (
    "a6runner: the Python plugin runner for Apache APISIX. APISIX starts 'a6-runner run' "
    "and calls it over a unix socket; the other commands are for you."
)
COMMANDS = {
    "run": "serve APISIX on APISIX_LISTEN_ADDRESS (what APISIX's ext-plugin.cmd starts)",
    "plugins": "list the registered plugins and where each came from",
    "call": "send one call to a runner and print the answer (curl for the runner)",
    "schema": "print the JSON Schema of each plugin's conf",
    "check-route": "check the ext-plugin confs of APISIX routes before they are deployed",
    "new": "start a plugin package: a plugin with a typed conf, its tests, pyproject.toml",
    "bench": "APISIX-like end-to-end load driver",
}
EXIT_STATUS = """\
exit status:
  0  done (run: a clean shutdown)
  1  a runtime or configuration error: a bad setting, socket path or log file
  2  a usage error (a bad flag), or plugins that do not load or start"""
MAIN_EPILOG = (
    "Run 'a6-runner COMMAND --help' for a command's options.\n\n"
    + EXIT_STATUS
    + "\n  3  call only: no runner to talk to"
)
RUN_EPILOG = f"""\
environment (APISIX sets the first two; the flags above override them):
  APISIX_LISTEN_ADDRESS   unix:/path/to/runner.sock, where to listen
  APISIX_CONF_EXPIRE_TIME seconds APISIX caches a conf token (default 3600)
  A6_NO_EXTENSIONS        1: use the pure-Python kernels even when compiled ones exist

signals:
  TERM, INT  finish the calls in flight, remove the socket, exit 0
  HUP        reload the plugins' code; tokens stay valid, calls in flight finish on
             the old code (with --workers N the workers are replaced one by one, each
             passing its connections to its successor: no call is lost)
  USR1       reopen --log-file (for logrotate)

{EXIT_STATUS}"""


def _terminal_columns() -> int:
    """The terminal's width as shutil.get_terminal_size() finds it: $COLUMNS, else the
    terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):  # not a terminal, or closed
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter (descriptions and epilogs kept as written), given the width
    itself: argparse imports shutil for it, and shutil brings bz2, lzma and fnmatch,
    about 0.3 MiB that every worker would inherit. Every parser of the runner uses it."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors end with where to find help, formatted by
    _Formatter (its sub-parsers too: they are made with this class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\nRun '{self.prog} --help' for help.\n")


def _socket_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {value!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range: {value!r}")
    return mode


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value!r}")
    return n


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value!r}")
    return seconds


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 turns it off), not {value!r}")
    return seconds


def _busy_poll(value: str) -> float:
    """--busy-poll MICROSECONDS, as seconds."""
    try:
        microseconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of microseconds: {value!r}") from None
    if not 0 <= microseconds <= MAX_BUSY_POLL * 1e6:
        raise argparse.ArgumentTypeError(
            f"must be between 0 (off) and {int(MAX_BUSY_POLL * 1e6)} microseconds, not {value!r}"
        )
    return microseconds / 1e6


def _mebibytes(value: str) -> int:
    n = _positive_int(value)
    return n << 20


def _frame_mebibytes(value: str) -> int:
    """--max-frame-memory MIB, the old flag: frames get half of --max-memory, so twice it."""
    return 2 * _mebibytes(value)


def _metrics_address(value: str) -> str:
    from ._metrics import parse_metrics_address

    try:
        parse_metrics_address(value)
    except A6Error as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--metrics ")) from None
    return value


def _add_observability_options(p_run: argparse.ArgumentParser) -> None:
    """--metrics and --otel (docs/operations/monitoring.md)."""
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
    parser = _Parser(
        prog="a6-runner",
        description=DESCRIPTION,
        epilog=MAIN_EPILOG,
    )
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p_run = sub.add_parser(
        "run",
        help=COMMANDS["run"],
        description="Serve APISIX: listen on the unix socket APISIX_LISTEN_ADDRESS names "
        "and run the plugins its routes ask for, until SIGTERM.",
        epilog=RUN_EPILOG,
    )
    p_run.add_argument("--listen", metavar="unix:PATH", help="overrides APISIX_LISTEN_ADDRESS")
    p_run.add_argument(
        "--conf-expire-time",
        type=_positive_seconds,
        metavar="SECONDS",
        help="overrides APISIX_CONF_EXPIRE_TIME (confs are kept 1.2 times as long)",
    )
    p_run.add_argument(
        "--socket-mode", type=_socket_mode, default=0o766, metavar="OCTAL", help="default 0766"
    )
    p_run.add_argument(
        "--workers", type=_positive_int, default=1, metavar="N", help="worker processes (default 1)"
    )
    p_run.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="event loop"
    )
    p_run.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the least severe lines logged; debug adds a line per call (default info)",
    )
    p_run.add_argument(
        "--log-file",
        metavar="PATH",
        help="write the log to this file (appended; reopened on SIGUSR1, for logrotate) "
        "instead of stderr, which APISIX copies into its error log",
    )
    p_run.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text lines (default), or one JSON object per line",
    )
    p_run.add_argument(
        "--reload",
        action="store_true",
        help="for development: reload the plugins when a file of theirs (--plugins) "
        "changes; needs the watchfiles package (pip install 'a6runner[reload]')",
    )
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
        "--max-memory",
        type=_mebibytes,
        default=DEFAULT_MEMORY,
        metavar="MIB",
        help="memory held for connections, per process: frames arriving or in calls may "
        "take half (beyond it connections wait their turn, unread), replies their peers "
        "have not read the rest (beyond it the connection with the most is closed) "
        f"(default {DEFAULT_MEMORY >> 20})",
    )
    # the flag before --max-memory, which bounded frames alone: they now get half of it
    p_run.add_argument(
        "--max-frame-memory", type=_frame_mebibytes, dest="max_memory", help=argparse.SUPPRESS
    )
    p_run.add_argument(
        "--frame-timeout",
        type=_seconds,
        default=DEFAULT_FRAME_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose frame stops arriving part-way this long while the "
        f"runner reads it (default {DEFAULT_FRAME_TIMEOUT:g}: APISIX writes a frame at "
        "once; 0: never)",
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
        "--busy-poll",
        type=_busy_poll,
        default=0.0,
        metavar="MICROSECONDS",
        help="after each read, keep polling the socket this long before sleeping, unless "
        "other tasks wait for a CPU (/proc/pressure/cpu): much lower latency at low "
        f"concurrency, for idle CPU (default 0: off; at most {int(MAX_BUSY_POLL * 1e6)})",
    )
    p_run.add_argument(
        "--max-worker-memory",
        type=_mebibytes,
        metavar="MIB",
        help="replace a worker whose own memory (USS) stays above this, without losing a "
        "call (off by default; with --workers 1 a supervisor runs one worker)",
    )
    p_run.add_argument(
        "--no-parent-watch",
        action="store_true",
        help="keep running when the process that started the runner exits (a runner "
        "started by hand under a process supervisor)",
    )
    add_plugin_options(p_run)
    p_run.add_argument(
        "--unknown-plugins",
        choices=UNKNOWN_PLUGINS,
        default="skip",
        help="a route's conf entry naming a plugin that is not registered: skip that entry "
        "(default, as the other runners do) or refuse every call with that conf (503)",
    )
    _add_observability_options(p_run)

    p_plugins = sub.add_parser(
        "plugins",
        help=COMMANDS["plugins"],
        description="List the plugins 'a6-runner run' would serve with the same options: "
        "each name and where it came from (bundled, an entry point, a path or module).",
        epilog=EXIT_STATUS,
    )
    add_plugin_options(p_plugins)

    # listed here for --help; main() hands them their arguments before parsing
    for command in ("call", "schema", "check-route", "new"):
        sub.add_parser(command, help=COMMANDS[command], add_help=False)
    sub.add_parser("bench", help=COMMANDS["bench"], add_help=False)
    return parser


def _no_command(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    commands = "\n".join(f"  {name:<11} {text}" for name, text in COMMANDS.items())
    print(
        f"a6-runner: error: no command given; the commands are:\n{commands}\n"
        "Run 'a6-runner COMMAND --help' for a command's options, 'a6-runner --help' for more.",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(sys.argv[1:] if argv is None else list(argv))
        sys.stdout.flush()  # a reader that went away shows here at the latest
    except BrokenPipeError:
        # `a6-runner schema | head`: the reader has what it wanted; no traceback, and
        # nothing more written to the closed pipe when the interpreter exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


def _main(argv: list[str]) -> int:
    # `call`, `bench` and the conf tools have their own parsers and imports: `a6-runner run`
    # never loads them
    if argv[:1] == ["schema"]:
        from ._conf_tools import schema_main

        return schema_main(argv[1:])
    if argv[:1] == ["check-route"]:
        from ._conf_tools import check_route_main

        return check_route_main(argv[1:])
    if argv[:1] == ["new"]:
        from ._scaffold import main as new_main

        return new_main(argv[1:])
    if argv[:1] == ["call"]:
        from ._call import main as call_main

        return call_main(argv[1:])
    if argv[:1] == ["bench"]:
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _no_command(parser)
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
                limits=Limits(
                    args.call_timeout,
                    args.max_memory,
                    args.stall_warning,
                    args.busy_poll,
                    args.frame_timeout,
                ),
                socket_group=args.socket_group,
                parent_watch=not args.no_parent_watch,
                log_file=args.log_file,
                log_format=args.log_format,
                reload=args.reload,
                metrics=args.metrics,
                otel=args.otel,
                unknown_plugins=args.unknown_plugins,
                max_worker_memory=args.max_worker_memory,
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
    except BrokenPipeError:
        raise  # (an OSError, but not the runner's: main() ends quietly)
    except (A6Error, OSError) as exc:
        print(f"a6-runner: error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
