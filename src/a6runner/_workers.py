"""``--workers N``: a supervisor process and N forked workers on one listening socket.

The supervisor binds the socket, forks the workers (they accept on the shared socket and
serve exactly like a single-process runner), replaces a worker that dies, and owns the
runner-wide state that must outlive and span workers:

* conf tokens: it issues them (same key -> same token, whichever worker asks) and keeps
  each token's raw conf, so a worker meeting a token another worker issued fetches the
  conf once, parses it and caches it until the same expiry;
* the token buckets of limit-req and the counters of limit-count (policy local), so a
  limit holds for the runner as a whole.

Workers talk to it over a socketpair each: length-prefixed marshal data (tuples, lists,
dicts, str, bytes, numbers; no pickle, which would cost every worker ~0.4 MiB), answered
in order.
The supervisor is a plain selector loop (no asyncio): forking from it is always safe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import marshal
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._confstore import PreparedConf, RawConf, TokenStore
from ._limits import Quota
from ._logging import reopen_log_file, set_process_label
from ._observe import Observer, make_observer, observed, report_to_supervisor
from ._plugin import Plugin
from ._reload import PluginLoader, reload_failed, watch_plugin_files
from ._server import (
    PARENT_CHECK,
    SHUTDOWN_GRACE,
    Listener,
    new_event_loop,
    parent_gone,
    run_until_complete,
    serve,
)
from ._services import FixedWindowCounters, PolicyServices, TokenBuckets
from ._settings import DEFAULT_CALL_TIMEOUT, Settings

if TYPE_CHECKING:
    from ._metrics import MetricsSocket, SelectorEndpoint, WorkerReports

log = logging.getLogger("a6runner")

_LENGTH = struct.Struct("<I")
RESPAWN_BACKOFF = 0.5  # seconds between respawns of a worker that keeps dying at once
ACCEPT_PAUSE = 0.001  # seconds a worker leaves new connections to the others after one
LEFTOVER_GRACE = 1.0  # seconds a worker waits at exit for tasks it cancelled


def _pack(message: Any) -> bytes:
    data = marshal.dumps(message)  # ValueError for anything but plain data
    return _LENGTH.pack(len(data)) + data


# -- worker side --------------------------------------------------------------------------------


class SupervisorLink:
    """A worker's channel to the supervisor: request/answer, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._writer: asyncio.StreamWriter | None = None
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = asyncio.Event()

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._sock, limit=1 << 26)
        asyncio.get_running_loop().create_task(self._read_answers(reader))

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                answer = marshal.loads(await reader.readexactly(length))
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            while self._pending:
                fut = self._pending.popleft()
                if not fut.done():
                    fut.set_exception(ConnectionError("the supervisor is gone"))
            self.closed.set()

    async def ask(self, *message: Any) -> Any:
        if self._writer is None or self.closed.is_set():
            raise ConnectionError("the supervisor is gone")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(fut)
        self._writer.write(_pack(message))
        return await fut


class SupervisedConfs:
    """ConfBackend of a worker: parsed chains cached locally, tokens from the supervisor."""

    def __init__(
        self,
        plugins: Mapping[str, Plugin],
        link: SupervisorLink,
        ttl: float,
        refuse_unknown: bool = False,
    ) -> None:
        self._plugins = plugins
        self._link = link
        self._refuse_unknown = refuse_unknown
        self._cache: TokenStore[PreparedConf] = TokenStore(ttl)

    def prepare(self, key: str | None, conf: RawConf) -> int | Any:
        if key is not None:
            known = self._cache.token_for_key(key)
            if known is not None:
                return known[0]
        return self._prepare_remote(key, list(conf))

    async def _prepare_remote(self, key: str | None, conf: list[tuple[str, bytes]]) -> int:
        token, expires_at = await self._link.ask("prepare", key, conf)
        if self._cache.get(token) is None:
            prepared = PreparedConf.parse(self._plugins, conf, self._refuse_unknown)
            self._cache.install(token, prepared, expires_at)
        if key is not None:
            self._cache.remember_key(key, token)
        return int(token)

    def lookup(self, token: int) -> PreparedConf | Any | None:
        prepared = self._cache.get(token)
        return prepared if prepared is not None else self._lookup_remote(token)

    async def _lookup_remote(self, token: int) -> PreparedConf | None:
        found = await self._link.ask("lookup", token)
        if found is None:
            return None
        conf, expires_at = found
        prepared = self._cache.get(token)  # another call may have fetched it meanwhile
        if prepared is None:
            prepared = PreparedConf.parse(self._plugins, conf, self._refuse_unknown)
            self._cache.install(token, prepared, expires_at)
        return prepared


class SupervisedServices(PolicyServices):
    """RunnerServices of a worker: local limits live in the supervisor, Redis limits go
    through this worker's own pools."""

    def __init__(self, link: SupervisorLink) -> None:
        super().__init__()
        self._link = link

    async def _local_reserve(self, key: str, rate: float, burst: int) -> float | None:
        delay: float | None = await self._link.ask("reserve", key, rate, burst)
        return delay

    async def _local_count(self, key: str, limit: int, window: float, cost: int) -> Quota:
        allowed, remaining, reset = await self._link.ask("count", key, limit, window, cost)
        return Quota(allowed, limit, remaining, reset)


def _worker_main(
    index: int,
    listener: socket.socket,
    channel: socket.socket,
    settings: Settings,
    plugins: Mapping[str, Plugin],
) -> int:
    """Body of a forked worker process; returns its exit status."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)  # inherited from the supervisor: its wake-up socket, not ours
    set_process_label(f"worker {index}")
    loop = new_event_loop(settings.loop)
    asyncio.set_event_loop(loop)
    link = SupervisorLink(channel)
    stop = asyncio.Event()
    retiring = False

    def retire() -> None:  # SIGUSR2: replaced after a reload; calls in flight may finish
        nonlocal retiring
        retiring = True
        stop.set()

    def retire_grace() -> float:  # a retiring worker's calls may run to the call timeout
        return (settings.limits.call_timeout or DEFAULT_CALL_TIMEOUT) if retiring else 0.0

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, retire)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_file)
    # SIGINT from a terminal, SIGHUP from a closed one, reach the whole group: the
    # supervisor coordinates the stop and the reload.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    tasks: set[asyncio.Task[None]] = set()

    async def say_ready() -> None:
        with contextlib.suppress(ConnectionError):
            await link.ask("ready")

    def on_ready() -> None:  # accepting: the supervisor may now retire the worker we replace
        task = loop.create_task(say_ready())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def main() -> None:
        await link.start()
        watcher = loop.create_task(link.closed.wait())
        watcher.add_done_callback(lambda _: stop.set())  # supervisor gone: stop too
        observer = make_observer(settings, worker=index)
        reports = _start_reports(observer, link)
        await serve(
            listener,
            SupervisedConfs(
                observed(observer, plugins),
                link,
                settings.conf_ttl,
                refuse_unknown=settings.unknown_plugins == "refuse",
            ),
            SupervisedServices(link),
            stop,
            on_ready,
            label=f"worker {index}",
            accept_pause=ACCEPT_PAUSE,
            limits=settings.limits,
            plugins=plugins,
            retire_grace=retire_grace,
            observer=observer,
        )
        if reports is not None:  # the last report, after the last call
            reports[1].set()
            await reports[0]

    try:
        run_until_complete(loop, main())
    finally:
        # The link's reader and its watcher are still pending: end them while the loop
        # runs (left to the garbage collector, they would touch the closed loop).
        # A plugin's task that ignores its cancellation is left behind after LEFTOVER_GRACE:
        # waiting for it would keep this worker alive forever, an orphan once its
        # supervisor is gone.
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            done, _ = loop.run_until_complete(asyncio.wait(leftover, timeout=LEFTOVER_GRACE))
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: an error here is no news at exit
        loop.close()
    return 0


def _start_reports(
    observer: Observer | None, link: SupervisorLink
) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """With --metrics: the task reporting this worker's counters to the supervisor, and
    the event that makes it send its last report and end."""
    if observer is None or observer.recorder is None:
        return None
    served = asyncio.Event()
    return asyncio.get_running_loop().create_task(
        report_to_supervisor(observer, link, served)
    ), served


# -- supervisor side ----------------------------------------------------------------------------


class _Channel:
    """The supervisor's end of one worker's socketpair, with its input buffer, and where
    the worker is in its life: serving the plugins of which reload, accepting yet, retiring."""

    def __init__(self, index: int, sock: socket.socket, pid: int, generation: int) -> None:
        self.index = index
        self.sock = sock
        self.pid = pid
        self.generation = generation
        self.ready = False  # it said it accepts connections
        self.retiring = False  # replaced: finishing its calls, then exits
        self.buffer = bytearray()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        plugins: Mapping[str, Plugin],
        loader: PluginLoader,
        watch: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.loader = loader
        self.watch = watch
        self.generation = 0  # of the plugins: one more at each successful reload
        self._replacing = False  # a reload's workers are being replaced
        self.tokens: TokenStore[list[tuple[str, bytes]]] = TokenStore(settings.conf_ttl)
        self.buckets = TokenBuckets()
        self.counters = FixedWindowCounters()
        self.selector = selectors.DefaultSelector()
        self.channels: dict[int, _Channel] = {}  # by pid
        self.listener: socket.socket | None = None
        self.stopping = False
        self._signals: list[int] = []
        self._last_spawn: dict[int, float] = {}
        # --metrics: the workers' reports and the endpoint serving them
        self.reports: WorkerReports | None = None
        self.metrics_socket: MetricsSocket | None = None
        self._endpoint: SelectorEndpoint | None = None

    # requests from workers
    def answer(self, message: tuple[Any, ...]) -> Any:
        op = message[0]
        if op == "reserve":
            _, key, rate, burst = message
            return self.buckets.reserve(key, rate, burst)
        if op == "count":
            _, key, limit, window, cost = message
            return self.counters.count(key, limit, window, cost)
        if op == "lookup":
            return self.tokens.get_with_expiry(message[1])
        if op == "prepare":
            _, key, conf = message
            return self.tokens.prepare(key, lambda: conf)
        if op == "metrics":
            return self._worker_reported(message[1], message[2])
        raise ValueError(f"unknown supervisor request {op!r}")

    def spawn(self, index: int) -> None:
        assert self.listener is not None
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                ours.close()
                self.selector.close()
                for channel in self.channels.values():
                    channel.sock.close()
                self._close_metrics_in_worker()
                status = _worker_main(index, self.listener, theirs, self.settings, self.plugins)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        theirs.close()
        ours.setblocking(False)
        channel = _Channel(index, ours, pid, self.generation)
        self.channels[pid] = channel
        self.selector.register(ours, selectors.EVENT_READ, channel)
        self._last_spawn[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, pid)

    def _on_readable(self, channel: _Channel) -> None:
        try:
            data = channel.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_channel(channel)
            return
        buf = channel.buffer
        buf += data
        replies = []
        while len(buf) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf)
            if len(buf) < _LENGTH.size + length:
                break
            message = marshal.loads(bytes(buf[_LENGTH.size : _LENGTH.size + length]))
            del buf[: _LENGTH.size + length]
            if message == ("ready",):
                channel.ready = True
                replies.append(_pack(None))
                continue
            try:
                replies.append(_pack(self.answer(message)))
            except Exception:
                log.exception("supervisor request failed")
                replies.append(_pack(None))
        if replies:
            channel.sock.setblocking(True)
            try:
                channel.sock.sendall(b"".join(replies))
            except OSError:
                self._drop_channel(channel)
            else:
                channel.sock.setblocking(False)

    def _drop_channel(self, channel: _Channel) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(channel.sock)
        channel.sock.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            channel = self.channels.pop(pid, None)
            if channel is None:
                continue
            self._drop_channel(channel)
            # (counted as a restart only when it died: not stopped, not retired by a reload)
            self._worker_exited(pid, died=not self.stopping and not channel.retiring)
            if self.stopping:
                continue
            if channel.retiring:
                log.info("worker %d (pid %d) finished its calls and exited", channel.index, pid)
                continue
            how = (
                f"signal {signal.Signals(-os.waitstatus_to_exitcode(status)).name}"
                if os.WIFSIGNALED(status)
                else f"status {os.waitstatus_to_exitcode(status)}"
            )
            if self._replacement(channel) is not None:
                log.warning(
                    "worker %d (pid %d) died with %s (already replaced)", channel.index, pid, how
                )
                continue
            log.warning(
                "worker %d (pid %d) died with %s: starting a new one", channel.index, pid, how
            )
            if time.monotonic() - self._last_spawn.get(channel.index, 0.0) < RESPAWN_BACKOFF:
                time.sleep(RESPAWN_BACKOFF)
            self.spawn(channel.index)

    # reloads: new plugins in the supervisor, then the workers replaced one by one

    def reload(self) -> None:
        """SIGHUP: import the plugins again here; on success, every worker is replaced (see
        _replace_next). Tokens stay: the supervisor keeps their raw confs, and a new worker
        parses each with the new plugins when it first meets it."""
        log.info("reloading the plugins")
        try:
            registry = self.loader.reload()
        except Exception as exc:
            reload_failed(exc)
            return
        self.plugins = {name: r.plugin for name, r in registry.items()}
        self.generation += 1
        log.info(
            "reloaded: %d plugins (%s); replacing the %d workers one by one",
            len(self.plugins),
            ", ".join(sorted(self.plugins)) or "none",
            self.settings.workers,
        )

    def _replacement(self, old: _Channel) -> _Channel | None:
        """The worker of the current plugins that takes ``old``'s place, if started."""
        for channel in self.channels.values():
            if channel.index == old.index and channel.generation == self.generation:
                return channel
        return None

    def _replace_next(self) -> None:
        """One step of replacing the workers after a reload, one at a time: start the new
        worker; once it accepts, tell the old one to finish its calls and exit (SIGUSR2);
        once that one has exited, the next. The socket is always served."""
        if self.stopping:
            return
        live = list(self.channels.values())
        old = [c for c in live if c.generation < self.generation and not c.retiring]
        retiring = any(c.retiring for c in live)
        if not old:
            if self._replacing and not retiring:
                log.info("reload done: every worker serves the new plugins")
                self._replacing = False
            return
        self._replacing = True
        if retiring or any(c.generation == self.generation and not c.ready for c in live):
            return
        target = old[0]
        new = self._replacement(target)
        if new is None:
            self.spawn(target.index)
            return
        target.retiring = True
        log.info(
            "worker %d (pid %d) replaced by pid %d: finishing its calls",
            target.index,
            target.pid,
            new.pid,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(target.pid, signal.SIGUSR2)

    def _reopen_log(self) -> None:
        """SIGUSR1: this process's log file, then every worker's."""
        reopen_log_file()
        for pid in self.channels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def _begin_stop(self) -> float:
        """Ask every worker to finish its calls and exit; the deadline to kill them at."""
        self.stopping = True
        for pid in self.channels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return time.monotonic() + SHUTDOWN_GRACE + 0.1

    def run(self) -> int:
        settings = self.settings
        started = time.monotonic()
        parent = os.getppid()
        set_process_label("supervisor")
        listener = Listener(settings.socket_path, settings.socket_mode, settings.socket_group)
        self.listener = listener.sock
        try:
            self._start_metrics()
        except BaseException:
            listener.close()
            raise
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        for handled in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGCHLD,
            signal.SIGHUP,
            signal.SIGUSR1,
        ):
            signal.signal(handled, lambda s, _f: self._signals.append(s))
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        watcher = watch_plugin_files(self.watch) if self.watch else None
        try:
            for index in range(settings.workers):
                self.spawn(index)
            log.info(
                "listening on %s with %d workers (%d plugins: %s; conf TTL %gs)",
                settings.socket_path,
                settings.workers,
                len(self.plugins),
                ", ".join(sorted(self.plugins)) or "none",
                settings.conf_ttl,
            )
            deadline: float | None = None
            while self.channels or not self.stopping:
                timeout = PARENT_CHECK if deadline is None else deadline - time.monotonic()
                for key, mask in self.selector.select(max(0.0, timeout)):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            wake_r.recv(4096)
                    elif isinstance(key.data, _Channel):
                        self._on_readable(key.data)
                    else:  # the metrics endpoint's sockets carry their handler
                        key.data(mask)
                while self._signals:
                    signum = self._signals.pop(0)
                    if signum == signal.SIGCHLD:
                        self._reap()
                    elif signum == signal.SIGHUP:
                        if not self.stopping:
                            self.reload()
                    elif signum == signal.SIGUSR1:
                        self._reopen_log()
                    elif not self.stopping:
                        log.info("received %s: stopping the workers", signal.Signals(signum).name)
                        deadline = self._begin_stop()
                if not self.stopping and settings.parent_watch and parent_gone(parent):
                    deadline = self._begin_stop()
                self._reap()
                self._replace_next()
                if deadline is not None and time.monotonic() >= deadline and self.channels:
                    log.warning("%d workers still running: killing them", len(self.channels))
                    for pid in list(self.channels):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    deadline = None
        finally:
            if watcher is not None:
                watcher.set()
            signal.set_wakeup_fd(old_wakeup)
            listener.close()
            self._stop_metrics()
        log.info("stopped after %.1fs", time.monotonic() - started)
        return 0

    # -- --metrics (README, Monitoring) --

    def _start_metrics(self) -> None:
        if self.settings.metrics is None:
            return
        from ._metrics import MetricsSocket, SelectorEndpoint, WorkerReports, parse_metrics_address

        self.reports = WorkerReports()
        self.metrics_socket = MetricsSocket(parse_metrics_address(self.settings.metrics))
        self._endpoint = SelectorEndpoint(self.metrics_socket.sock, self._metrics_response)
        self._endpoint.register(self.selector)
        log.info("metrics on %s (/metrics, /healthz)", self.metrics_socket.address)

    def _stop_metrics(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
        if self.metrics_socket is not None:
            self.metrics_socket.close()

    def _close_metrics_in_worker(self) -> None:
        """In a forked worker: the endpoint's sockets are the supervisor's."""
        if self._endpoint is not None:
            self._endpoint.close_sockets()
        if self.metrics_socket is not None:
            self.metrics_socket.close(remove=False)

    def _worker_reported(self, pid: int, snapshot: Any) -> None:
        if self.reports is not None and pid in self.channels:
            self.reports.report(pid, snapshot)

    def _worker_exited(self, pid: int, died: bool) -> None:
        if self.reports is not None:
            self.reports.worker_exited(pid, died)

    def _metrics_response(self, head: bytes) -> bytes:
        from ._metrics import exposition, families, http_response, live_tokens

        reports = self.reports
        assert reports is not None

        def render() -> bytes:
            counters, gauges = reports.totals()
            gauges["conf_tokens"] = live_tokens(self.tokens)
            processes = [("supervisor", os.getpid()), *self._worker_labels()]
            return exposition(families(counters, gauges, reports.restarts, processes))

        def health() -> tuple[bool, str]:
            # a worker being replaced after a reload no longer accepts: not counted
            alive = reports.alive(p for p, c in self.channels.items() if not c.retiring)
            if self.stopping:
                return False, "stopping"
            if not alive:
                return False, f"no worker alive (0 of {self.settings.workers})"
            return True, f"ok: {alive} of {self.settings.workers} workers alive"

        return http_response(head, render, health)

    def _worker_labels(self) -> list[tuple[str, int]]:
        """(``worker`` label, pid) of each live worker for the process metrics: its index;
        while a reload replaces workers, the old one of an index is ``"<index>-old"``
        (``"<index>-old-<pid>"`` beyond one), so that no two processes share a label."""
        labels: list[tuple[str, int]] = []
        taken: set[str] = set()
        newest_first = sorted(
            self.channels.items(), key=lambda item: (item[1].index, -item[1].generation)
        )
        for pid, channel in newest_first:
            label = str(channel.index)
            if label in taken:
                label = f"{channel.index}-old"
            if label in taken:
                label = f"{channel.index}-old-{pid}"
            taken.add(label)
            labels.append((label, pid))
        return labels


def run_supervisor(
    settings: Settings,
    plugins: Mapping[str, Plugin],
    loader: PluginLoader,
    watch: Sequence[str] = (),
) -> int:
    return Supervisor(settings, plugins, loader, watch).run()
