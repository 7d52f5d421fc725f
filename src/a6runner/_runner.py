"""Starting and stopping a runner: the one startup sequence (``a6-runner run`` and
``a6runner.run()`` both come here), the single-process serve loop, signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._confstore import ConfStore
from ._errors import ConfigError
from ._kernels import implementation
from ._lifecycle import PluginLifecycle, PluginStartError
from ._logging import reopen_log_file, setup_logging
from ._observe import Observer, make_observer, observed
from ._plugin import Plugin
from ._reload import (
    LivePlugins,
    PluginLoader,
    check_reload_available,
    reload_failed,
    watch_plugin_files,
)
from ._server import PARENT_CHECK, Listener, new_event_loop, parent_gone, run_until_complete, serve
from ._services import LocalServices
from ._settings import (
    DEFAULT_LIMITS,
    DEFAULT_SOCKET_MODE,
    UNKNOWN_PLUGINS,
    Limits,
    Settings,
    parse_group,
)
from ._version import VERSION

if TYPE_CHECKING:
    from ._metrics import SingleProcessMetrics

log = logging.getLogger("a6runner")


def version() -> str:
    """``a6runner X.Y (native kernels, Python 3.11.7)``: what ``--version`` and the startup
    log line say."""
    return f"a6runner {VERSION} ({implementation()} kernels, Python {sys.version.split()[0]})"


async def serve_single(
    settings: Settings,
    plugins: Mapping[str, Plugin],
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    confs: ConfStore | None = None,
    observer: Observer | None = None,
    lifecycle: PluginLifecycle | None = None,
) -> None:
    """Serve in this process (``--workers 1``) until ``stop`` is set: conf tokens (in
    ``confs``, a new ConfStore when None) and token buckets live here (``clock`` is what
    their expiry, the frame timeout and the Redis failure log read: tests pass a fake).
    ``observer`` sees the calls (``confs`` then holds its stand-ins for the plugins);
    with no ``confs``, the observer the settings ask for is made here. The plugins are
    started before the first call and stopped at the end (``lifecycle``: PluginStartError
    when a start fails)."""
    listener = Listener(settings.socket_path, settings.socket_mode, settings.socket_group)
    try:
        log.info(
            "listening on %s (%d plugins: %s; conf TTL %gs)",
            settings.socket_path,
            len(plugins),
            ", ".join(sorted(plugins)) or "none",
            settings.conf_ttl,
        )
        if confs is None:
            observer = make_observer(settings)
            confs = ConfStore(
                observed(observer, plugins),
                settings.conf_ttl,
                clock,
                refuse_unknown=settings.unknown_plugins == "refuse",
            )
        endpoint = await _start_metrics(settings, observer, confs)
        try:
            await serve(
                listener.sock,
                confs,
                LocalServices(clock),
                stop,
                on_ready,
                limits=settings.limits,
                plugins=plugins,
                observer=observer,
                lifecycle=lifecycle,
                clock=clock,
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


async def reload_in_place(
    loader: PluginLoader,
    confs: ConfStore,
    live: LivePlugins,
    lifecycle: PluginLifecycle,
    observer: Observer | None = None,
) -> bool:
    """SIGHUP with one process: import the plugins again, start the new instances (the
    old ones serve meanwhile), then serve with them: every live token's conf is parsed
    again by them. Calls in flight finish with the chain they started with, and the old
    instances are stopped once they have ended. A reload that fails to import or to start
    leaves everything as it was. With an ``observer`` the new plugins are observed too,
    and their metrics go on from what the old ones counted."""
    started = time.monotonic()
    log.info("reloading the plugins")
    try:
        registry = loader.reload()
        plugins = {name: r.plugin for name, r in registry.items()}
        await lifecycle.start(plugins)
    except Exception as exc:
        reload_failed(exc)
        return False
    previous = live.current
    live.current = plugins
    reparsed = confs.reload(observed(observer, plugins))
    log.info(
        "reloaded: %d plugins (%s); %d live confs parsed again, in %.2fs",
        len(plugins),
        ", ".join(sorted(plugins)) or "none",
        reparsed,
        time.monotonic() - started,
    )
    lifecycle.retire(previous)
    return True


def hold_signals() -> None:
    """Until the runner's own handlers are in place, SIGHUP (reload) and SIGUSR1 (reopen
    the log file) must not kill it (their default action)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)


def run_with_settings(
    settings: Settings,
    plugins: Mapping[str, Plugin],
    loader: PluginLoader,
    watch: Sequence[str] = (),
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean shutdown).
    SIGHUP reloads the plugins from ``loader``; so does a change to a ``watch`` path."""
    _check_observability(settings)
    if settings.workers > 1 or settings.max_worker_memory:
        # (recycling replaces a worker: even --workers 1 then has a supervisor)
        from ._workers import check_memory_readable, run_supervisor

        if settings.max_worker_memory:
            check_memory_readable()
        return run_supervisor(settings, plugins, loader, watch)
    loop = new_event_loop(settings.loop)
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    started = time.monotonic()
    live = LivePlugins(plugins)
    observer = make_observer(settings)
    confs = ConfStore(
        observed(observer, plugins),
        settings.conf_ttl,
        refuse_unknown=settings.unknown_plugins == "refuse",
    )
    lifecycle = PluginLifecycle()
    serving = asyncio.Event()  # the plugins started: a SIGHUP before then waits for it
    reloading = asyncio.Lock()  # one reload at a time; a SIGHUP meanwhile waits its turn

    def on_signal(signum: int) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    async def reload() -> None:
        await serving.wait()
        async with reloading:
            await reload_in_place(loader, confs, live, lifecycle, observer)

    def on_hangup() -> None:
        lifecycle.track(loop.create_task(reload()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_file)
    if settings.parent_watch:
        parent = os.getppid()

        def watch_parent() -> None:
            if parent_gone(parent):
                stop.set()
            else:
                loop.call_later(PARENT_CHECK, watch_parent)

        loop.call_later(PARENT_CHECK, watch_parent)
    watcher = watch_plugin_files(watch) if watch else None
    try:
        run_until_complete(
            loop,
            serve_single(
                settings,
                live,
                stop,
                serving.set,
                confs=confs,
                observer=observer,
                lifecycle=lifecycle,
            ),
        )
    except PluginStartError as exc:
        log.error("%s: the runner stops (exit status 2)", exc)
        return 2
    finally:
        if watcher is not None:
            watcher.set()
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
    log_file: str | None = None,
    log_format: str = "text",
    reload: bool = False,
    metrics: str | None = None,
    otel: bool = False,
    unknown_plugins: str = "skip",
    max_worker_memory: int | None = None,
) -> int:
    """Run a runner serving ``plugins`` (plugin classes) until SIGTERM/SIGINT.

    Settings default to what APISIX passes (``APISIX_LISTEN_ADDRESS``,
    ``APISIX_CONF_EXPIRE_TIME``); ``listen``/``conf_expire_time`` override them.
    ``plugin_paths`` are files, directories or modules to load plugins from (as
    ``--plugins``); the bundled plugins and the ``a6runner.plugins`` entry points are added
    unless disabled. ``limits`` bound what a call and a connection may take;
    ``socket_group`` is a group name or gid for the socket file; with ``parent_watch`` the
    runner exits when the process that started it exits. The log goes to ``log_file``
    (stderr when None) as ``log_format`` lines (``text`` or ``json``), from ``log_level``
    up. SIGHUP reloads the plugins; with ``reload`` a change to a ``plugin_paths`` file
    does too (needs ``a6runner[reload]``). ``metrics`` (``"HOST:PORT"`` or
    ``"unix:/path"``) serves /metrics and /healthz; ``otel`` makes OpenTelemetry spans.
    ``unknown_plugins`` is what a conf entry naming an unregistered plugin gets:
    ``"skip"`` (the entry is skipped) or ``"refuse"`` (every call with the conf is
    refused with 503), as ``--unknown-plugins``.
    ``max_worker_memory`` (bytes) replaces a worker whose own memory stays above it.
    Returns the exit status (0 after a clean shutdown, 2 when a plugin's start raised),
    like ``a6-runner run``.
    """
    if unknown_plugins not in UNKNOWN_PLUGINS:
        raise ConfigError(
            f"unknown_plugins must be one of {', '.join(UNKNOWN_PLUGINS)}, got {unknown_plugins!r}"
        )
    hold_signals()
    setup_logging(log_level, log_file, log_format)
    settings = Settings.from_env(os.environ, listen, conf_expire_time)
    settings.workers = workers
    settings.socket_mode = socket_mode
    settings.loop = loop
    settings.limits = limits
    settings.parent_watch = parent_watch
    settings.metrics = metrics
    settings.otel = otel
    settings.unknown_plugins = unknown_plugins
    settings.max_worker_memory = max_worker_memory
    if socket_group is not None:
        settings.socket_group = (
            socket_group if isinstance(socket_group, int) else parse_group(socket_group)
        )
    loader = PluginLoader(plugins, plugin_paths, bundled=bundled, entry_points=entry_points)
    registry = loader.load()
    watch: list[str] = []
    if reload:
        watch = loader.watched_paths()
        check_reload_available(watch)
    log.info("%s", version())
    return run_with_settings(
        settings, {name: r.plugin for name, r in registry.items()}, loader, watch
    )
