"""Starting and stopping a runner: settings from the environment, the event loop, signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ._errors import ConfigError
from ._plugin import Plugin, RunnerServices
from ._server import ConfBackend, Server, bind_unix_socket, single_process_backends

log = logging.getLogger("a6runner")

DEFAULT_CONF_EXPIRE_TIME = 3600.0
CONF_TTL_FACTOR = 1.2  # keep confs a bit longer than APISIX caches their tokens
SHUTDOWN_GRACE = 0.8  # APISIX sends SIGKILL about 1 s after SIGTERM


def parse_listen_address(value: str, source: str = "APISIX_LISTEN_ADDRESS") -> str:
    """The socket path from ``unix:/path``; ConfigError names ``source`` otherwise."""
    if not value.startswith("unix:") or len(value) <= len("unix:"):
        raise ConfigError(f"{source} must be 'unix:/path/to/socket', got {value!r}")
    return value[len("unix:") :]


def parse_conf_expire_time(value: str, source: str = "APISIX_CONF_EXPIRE_TIME") -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{source} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{source} must be positive, got {value!r}")
    return seconds


@dataclass
class Settings:
    socket_path: str
    conf_expire_time: float = DEFAULT_CONF_EXPIRE_TIME
    socket_mode: int = 0o766
    workers: int = 1
    loop: str = "auto"  # auto | uvloop | asyncio

    @property
    def conf_ttl(self) -> float:
        return self.conf_expire_time * CONF_TTL_FACTOR

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        listen: str | None = None,
        conf_expire_time: float | None = None,
    ) -> Settings:
        """Flags (``listen``, ``conf_expire_time``) override the variables APISIX sets."""
        if listen is not None:
            path = parse_listen_address(listen, "--listen")
        elif "APISIX_LISTEN_ADDRESS" in env:
            path = parse_listen_address(env["APISIX_LISTEN_ADDRESS"])
        else:
            raise ConfigError(
                "APISIX_LISTEN_ADDRESS is not set (APISIX sets it when it starts the runner; "
                "by hand, pass --listen unix:/tmp/runner.sock)"
            )
        if conf_expire_time is None:
            raw = env.get("APISIX_CONF_EXPIRE_TIME")
            conf_expire_time = (
                parse_conf_expire_time(raw) if raw is not None else DEFAULT_CONF_EXPIRE_TIME
            )
        return cls(socket_path=path, conf_expire_time=conf_expire_time)


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop when available (or asked for), else the stdlib loop."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    elif kind != "asyncio":
        raise ConfigError(f"unknown event loop {kind!r} (auto, uvloop or asyncio)")
    return asyncio.new_event_loop()


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


async def serve_with(
    sock: socket.socket,
    confs: ConfBackend,
    services: RunnerServices,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    label: str = "runner",
    accept_pause: float = 0.0,
) -> None:
    """Serve APISIX connections on the listening ``sock`` until ``stop`` is set, then stop
    accepting and let the calls in flight finish."""
    server = Server(sock, confs, services, accept_pause)
    await server.start()
    if on_ready is not None:
        on_ready()
    await stop.wait()
    log.info("%s shutting down: no new connections, finishing calls in flight", label)
    await server.stop(SHUTDOWN_GRACE)


async def serve_single(
    settings: Settings,
    plugins: Mapping[str, Plugin],
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Serve in this process (``--workers 1``) until ``stop`` is set."""
    sock = bind_unix_socket(settings.socket_path, settings.socket_mode)
    confs, services = single_process_backends(plugins, settings.conf_ttl, clock)
    try:
        log.info(
            "listening on %s (%d plugins: %s; conf TTL %gs)",
            settings.socket_path,
            len(plugins),
            ", ".join(sorted(plugins)) or "none",
            settings.conf_ttl,
        )
        await serve_with(sock, confs, services, stop, on_ready)
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(settings.socket_path)


def run_with_settings(settings: Settings, plugins: Mapping[str, Plugin]) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean shutdown)."""
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
    try:
        loop.run_until_complete(serve_single(settings, plugins, stop))
    finally:
        loop.close()
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0


def run(
    plugins: Iterable[type[Plugin]] = (),
    *,
    listen: str | None = None,
    conf_expire_time: float | None = None,
    workers: int = 1,
    bundled: bool = True,
    entry_points: bool = True,
    socket_mode: int = 0o766,
    loop: str = "auto",
    log_level: str = "info",
) -> int:
    """Run a runner serving ``plugins`` (plugin classes) until SIGTERM/SIGINT.

    Settings default to what APISIX passes (``APISIX_LISTEN_ADDRESS``,
    ``APISIX_CONF_EXPIRE_TIME``); ``listen``/``conf_expire_time`` override them. The
    bundled plugins and the ``a6runner.plugins`` entry points are added unless disabled.
    Returns the exit status (0 after a clean shutdown), like ``a6-runner run``.
    """
    from ._registry import build_registry

    setup_logging(log_level)
    settings = Settings.from_env(os.environ, listen, conf_expire_time)
    settings.workers = workers
    settings.socket_mode = socket_mode
    settings.loop = loop
    registry = build_registry(plugins, bundled=bundled, entry_points=entry_points)
    return run_with_settings(settings, {name: r.plugin for name, r in registry.items()})
