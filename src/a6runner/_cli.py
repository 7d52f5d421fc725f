"""``a6-runner``: run the runner, list plugins, measure it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ._errors import A6Error
from ._kernels import implementation
from ._registry import PluginLoadError, add_plugin_options, build_registry
from ._runner import Settings, run_with_settings, setup_logging

log = logging.getLogger("a6runner")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a6-runner", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
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
    add_plugin_options(p_run)

    p_plugins = sub.add_parser("plugins", help="list the registered plugins and their origin")
    add_plugin_options(p_plugins)

    # listed here for --help; main() hands them their arguments before parsing
    sub.add_parser("call", help="send one call to a runner, print the answer", add_help=False)
    sub.add_parser("bench", help="APISIX-like end-to-end load driver", add_help=False)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("a6runner")
    except PackageNotFoundError:
        v = "unknown"
    return f"a6runner {v} ({implementation()} kernels, Python {sys.version.split()[0]})"


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
            setup_logging(args.log_level)
            settings = Settings.from_env(os.environ, args.listen, args.conf_expire_time)
            settings.socket_mode = args.socket_mode
            settings.workers = args.workers
            settings.loop = args.loop
            registry = build_registry(
                paths=args.plugins,
                bundled=not args.no_bundled,
                entry_points=not args.no_entry_points,
            )
            log.info("%s", _version())
            return run_with_settings(settings, {name: r.plugin for name, r in registry.items()})
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
