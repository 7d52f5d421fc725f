"""Starting and stopping a runner: the one startup sequence (``a6-runner run`` and
``a6runner.run()`` both come here), the single-process serve loop, signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._confstore import ConfStore
from ._errors import ConfigError
from ._kernels import implementation
from ._observe import Observer, make_observer
from ._plugin import Plugin
from ._server import PARENT_CHECK, Listener, new_event_loop, parent_gone, run_until_complete, serve
from ._services import LocalServices
from ._settings import DEFAULT_LIMITS, DEFAULT_SOCKET_MODE, Limits, Settings, parse_group

if TYPE_CHECKING:
    from ._metrics import SingleProcessMetrics

log = logging.getLogger("a6runner")


def setup_logging(level: str = "info") -> None:
    """One line per event on stderr (APISIX merges it into its error log)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s a6runner[%(process)d] %(levelname)s %(message)s")
    )
    root = logging.getLogger("a6runner")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False


def version() -> str:
    """``a6runner X.Y (native kernels, Python 3.11.7)``: what ``--version`` and the startup
    log line say."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        v = dist_version("a6runner")
    except PackageNotFoundError:
        v = "unknown"
    return f"a6runner {v} ({implementation()} kernels, Python {sys.version.split()[0]})"


async def serve_single(
    settings: Settings,
    plugins: Mapping[str, Plugin],
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve in this process (``--workers 1``) until ``stop`` is set: conf tokens and
    token buckets live here."""
    listener = Listener(settings.socket_path, settings.socket_mode, settings.socket_group)
    try:
        log.info(
            "listening on %s (%d plugins: %s; conf TTL %gs)",
            settings.socket_path,
            len(plugins),
            ", ".join(sorted(plugins)) or "none",
            settings.conf_ttl,
        )
        observer = make_observer(settings)
        served = observer.plugins(plugins) if observer is not None else plugins
        confs = ConfStore(served, settings.conf_ttl)
        endpoint = await _start_metrics(settings, observer, confs)
        try:
            await serve(
                listener.sock,
                confs,
                LocalServices(),
                stop,
                on_ready,
                limits=settings.limits,
                plugins=plugins,
                observer=observer,
            )
        finally:
            if endpoint is not None:
                endpoint.close()
    finally:
        listener.close()


async def _start_metrics(
    settings: Settings, observer: Observer | None, confs: ConfStore
) -> SingleProcessMetrics | None:
    """The /metrics endpoint of a single-process runner (``--metrics``), if asked for."""
    if settings.metrics is None or observer is None:
        return None
    from ._metrics import SingleProcessMetrics, live_tokens, parse_metrics_address

    endpoint = SingleProcessMetrics(
        parse_metrics_address(settings.metrics), observer, lambda: live_tokens(confs.tokens)
    )
    await endpoint.start()
    return endpoint


def run_with_settings(settings: Settings, plugins: Mapping[str, Plugin]) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean shutdown)."""
    _check_observability(settings)
    if settings.workers > 1:
        from ._workers import run_supervisor

        return run_supervisor(settings, plugins)
    loop = new_event_loop(settings.loop)
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    started = time.monotonic()

    def on_signal(signum: int) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    if settings.parent_watch:
        parent = os.getppid()

        def watch_parent() -> None:
            if parent_gone(parent):
                stop.set()
            else:
                loop.call_later(PARENT_CHECK, watch_parent)

        loop.call_later(PARENT_CHECK, watch_parent)
    try:
        run_until_complete(loop, serve_single(settings, plugins, stop))
    finally:
        loop.close()
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0


def _check_observability(settings: Settings) -> None:
    """What --metrics and --otel need is installed and the address parses: startup errors."""
    if settings.metrics is not None:
        from ._metrics import parse_metrics_address, require_prometheus

        require_prometheus()
        parse_metrics_address(settings.metrics)
    if settings.otel:
        from ._tracing import require_opentelemetry

        require_opentelemetry()


def run(
    plugins: Iterable[type[Plugin]] = (),
    *,
    listen: str | None = None,
    conf_expire_time: float | None = None,
    workers: int = 1,
    plugin_paths: Sequence[str] = (),
    bundled: bool = True,
    entry_points: bool = True,
    socket_mode: int = DEFAULT_SOCKET_MODE,
    loop: str = "auto",
    log_level: str = "info",
    limits: Limits = DEFAULT_LIMITS,
    socket_group: str | int | None = None,
    parent_watch: bool = True,
    metrics: str | None = None,
    otel: bool = False,
) -> int:
    """Run a runner serving ``plugins`` (plugin classes) until SIGTERM/SIGINT.

    Settings default to what APISIX passes (``APISIX_LISTEN_ADDRESS``,
    ``APISIX_CONF_EXPIRE_TIME``); ``listen``/``conf_expire_time`` override them.
    ``plugin_paths`` are files, directories or modules to load plugins from (as
    ``--plugins``); the bundled plugins and the ``a6runner.plugins`` entry points are added
    unless disabled. ``limits`` bound what a call and a connection may take;
    ``socket_group`` is a group name or gid for the socket file; with ``parent_watch`` the
    runner exits when the process that started it exits; ``metrics`` (``"HOST:PORT"`` or
    ``"unix:/path"``) serves /metrics and /healthz, ``otel`` makes OpenTelemetry spans.
    Returns the exit status (0 after a clean shutdown), like ``a6-runner run``.
    """
    from ._registry import build_registry

    setup_logging(log_level)
    settings = Settings.from_env(os.environ, listen, conf_expire_time)
    settings.workers = workers
    settings.socket_mode = socket_mode
    settings.loop = loop
    settings.limits = limits
    settings.parent_watch = parent_watch
    settings.metrics = metrics
    settings.otel = otel
    if socket_group is not None:
        settings.socket_group = (
            socket_group if isinstance(socket_group, int) else parse_group(socket_group)
        )
    registry = build_registry(plugins, plugin_paths, bundled=bundled, entry_points=entry_points)
    log.info("%s", version())
    return run_with_settings(settings, {name: r.plugin for name, r in registry.items()})
