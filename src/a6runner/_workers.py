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
in order. A second socketpair per worker (SOCK_SEQPACKET) carries connection descriptors
(SCM_RIGHTS): a worker being replaced (a reload, ``--max-worker-memory``) passes each
APISIX connection on as soon as it holds nothing of APISIX's, and the supervisor relays it
to the successor, which serves it like one it accepted: a pooled connection is never
closed under APISIX, so a replacement loses no call.
The supervisor is a plain selector loop (no asyncio): forking from it is always safe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import itertools
import logging
import marshal
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._confstore import PreparedConf, RawConf, TokenStore
from ._errors import ConfigError
from ._lifecycle import PluginLifecycle, PluginStartError
from ._limits import Quota
from ._logging import reopen_log_file, set_process_label
from ._observe import Observer, make_observer, observed, report_to_supervisor
from ._plugin import Plugin
from ._registry import PluginLoadError
from ._reload import PluginLoader, reload_failed, watch_plugin_files
from ._server import (
    PARENT_CHECK,
    SHUTDOWN_DEADLINE,
    SHUTDOWN_GRACE,
    Listener,
    Server,
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
# A worker that dies before it serves, or whose plugins' start fails, is started again
# after RESPAWN_BACKOFF seconds, then twice as long each time up to MAX_RESPAWN_BACKOFF.
RESPAWN_BACKOFF = 0.5
MAX_RESPAWN_BACKOFF = 30.0
ACCEPT_PAUSE = 0.001  # seconds a worker leaves new connections to the others after one
LEFTOVER_GRACE = 1.0  # seconds a worker waits at exit for tasks it cancelled
START_FAILED = 2  # a worker's exit status when a plugin's start raised (as the runner's)
MAX_FDS = 64  # connection descriptors per message on a descriptor channel
HAND_OFF_FLUSH = 5.0  # seconds a replaced worker waits for its descriptors to leave
RELAY_RETRY = 0.005  # seconds between tries to relay descriptors a worker cannot take yet
# --max-worker-memory: each worker's memory is measured every MEMORY_CHECK seconds; one
# above the limit at MEMORY_CHECKS checks in a row is replaced, at most one every
# RECYCLE_INTERVAL seconds (a limit set too low cannot make the workers churn).
MEMORY_CHECK = 1.0
MEMORY_CHECKS = 3
RECYCLE_INTERVAL = 30.0


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


class DescriptorLink:
    """A worker's end of its descriptor channel to the supervisor (SOCK_SEQPACKET): the
    connections it passes on when it is replaced go out here, one message per batch of
    descriptors; those of the worker it replaces come in here (Server.adopt)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._outbox: list[int] = []  # descriptors not sent yet (the supervisor is slow)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._drained: asyncio.Event | None = None

    def receive(self, server: Server) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable, server)

    def _on_readable(self, server: Server) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, 1, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                server.adopt(socket.socket(fileno=fd))
            if not data and not fds:  # the supervisor is gone
                assert self._loop is not None
                self._loop.remove_reader(self._sock.fileno())
                return

    def send(self, fd: int) -> None:
        self._outbox.append(fd)
        self._flush()

    def _flush(self) -> None:
        loop = self._loop = self._loop or asyncio.get_running_loop()
        while self._outbox:
            batch = self._outbox[:MAX_FDS]
            try:
                socket.send_fds(self._sock, [b"c"], batch)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    loop.add_writer(self._sock.fileno(), self._flush)
                    self._writing = True
                return
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:  # too many in flight: the supervisor reads
                    loop.call_later(RELAY_RETRY, self._flush)
                    return
                log.warning("cannot pass connections on (%s): closing them", exc.strerror)
                batch = list(self._outbox)
            for fd in batch:
                os.close(fd)
            del self._outbox[: len(batch)]
        if self._writing:
            loop.remove_writer(self._sock.fileno())
            self._writing = False
        if self._drained is not None:
            self._drained.set()

    async def flush(self) -> None:
        if not self._outbox:
            return
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), HAND_OFF_FLUSH)
        except asyncio.TimeoutError:
            log.warning("%d connections could not be passed on: closed", len(self._outbox))
            for fd in self._outbox:
                os.close(fd)
            self._outbox.clear()


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
    descriptors: socket.socket,
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
    lifecycle = PluginLifecycle()
    status = 0

    def retire() -> None:  # SIGUSR2: replaced; connections passed on, calls in flight finish
        nonlocal retiring
        retiring = True
        stop.set()

    def retire_grace() -> float:  # a retiring worker's calls may run to the call timeout
        return (settings.limits.call_timeout or DEFAULT_CALL_TIMEOUT) if retiring else 0.0

    def terminate() -> None:  # SIGTERM: the runner stops; a retiring worker hurries too
        if retiring and lifecycle.server is not None:
            lifecycle.server.shorten_retire(SHUTDOWN_GRACE)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, terminate)
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
        nonlocal status
        await link.start()
        watcher = loop.create_task(link.closed.wait())
        watcher.add_done_callback(lambda _: stop.set())  # supervisor gone: stop too
        observer = make_observer(settings, worker=index)
        reports = _start_reports(observer, link)
        try:
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
                lifecycle=lifecycle,
                hand_off=DescriptorLink(descriptors),
            )
        except PluginStartError as exc:  # the supervisor logs it and decides
            status = START_FAILED
            with contextlib.suppress(ConnectionError):
                await link.ask("start_failed", str(exc))
            return
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
    return status


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


def private_memory(pid: int) -> int:
    """What process ``pid`` owns alone, in bytes: its USS (Private_Clean + Private_Dirty of
    /proc/PID/smaps_rollup). Pages it still shares with the supervisor since the fork do
    not count, and nothing depends on how many workers share them (as PSS would)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total += int(line.split()[1]) << 10  # kB
    return total


def check_memory_readable() -> None:
    """ConfigError unless --max-worker-memory can measure a process here."""
    try:
        private_memory(os.getpid())
    except (OSError, ValueError, IndexError):
        raise ConfigError(
            "--max-worker-memory reads /proc/PID/smaps_rollup (Linux 4.14 or later), which "
            "cannot be read here"
        ) from None


class MemoryRecycler:
    """``--max-worker-memory``: which worker to replace. ``check`` is called every
    MEMORY_CHECK seconds with the workers that may be replaced; one whose memory
    (``measure``: USS) is above ``limit`` bytes at ``checks`` checks in a row is due, but at
    most one every ``interval`` seconds of ``clock``."""

    def __init__(
        self,
        limit: int,
        *,
        checks: int = MEMORY_CHECKS,
        interval: float = RECYCLE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        measure: Callable[[int], int] = private_memory,
    ) -> None:
        self.limit = limit
        self.checks = checks
        self.interval = interval
        self._clock = clock
        self._measure = measure
        self._over: dict[int, int] = {}  # pid: checks in a row above the limit
        self._last: float | None = None  # when the last recycle was decided

    def check(self, pids: Iterable[int]) -> tuple[int, int] | None:
        """Measure each of ``pids``: (pid, bytes) of the one to replace now, if any (the
        largest of those due)."""
        over: dict[int, int] = {}
        due: tuple[int, int] | None = None
        for pid in pids:
            try:
                size = self._measure(pid)
            except OSError:  # it exited meanwhile
                continue
            if size <= self.limit:
                continue
            over[pid] = self._over.get(pid, 0) + 1
            if over[pid] >= self.checks and (due is None or size > due[1]):
                due = (pid, size)
        self._over = over
        now = self._clock()
        if due is None or (self._last is not None and now - self._last < self.interval):
            return None
        self._last = now
        del self._over[due[0]]
        return due


class _Channel:
    """The supervisor's ends of one worker's socketpairs (requests, with their input
    buffer; descriptors, with those waiting to be relayed to it), and where the worker is
    in its life: serving the plugins of which generation, accepting yet, being replaced."""

    serials = itertools.count()

    def __init__(
        self,
        index: int,
        sock: socket.socket,
        pid: int,
        generation: int,
        descriptors: socket.socket | None = None,
    ) -> None:
        self.index = index
        self.sock = sock
        self.pid = pid
        self.generation = generation
        self.descriptors = descriptors
        self.serial = next(self.serials)  # the later started, the higher
        self.ready = False  # it said it accepts connections (its plugins started)
        self.retiring = False  # replaced: passing its connections on, then exits
        self.recycle = False  # to be replaced: over --max-worker-memory
        self.predecessor: _Channel | None = None  # the worker it replaces once ready
        self.successor: _Channel | None = None  # the worker starting to replace it
        self.start_failure: str | None = None  # what its plugins' start raised
        self.outbox: list[int] = []  # descriptors to relay to it
        self.passed_on = 0  # connections it passed on when it was replaced
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
        self.plugins = plugins  # those of the current generation
        self.loader = loader
        self.watch = watch
        self.generation = 0  # of the plugins the workers should serve
        self._plugin_sets: dict[int, Mapping[str, Plugin]] = {0: plugins}  # by generation
        self._generations = itertools.count(1)
        self._rolling_out: int | None = None  # the generation workers are being replaced with
        self._undoing = False  # ... which is the previous one: a reload's plugins failed
        self._previous = 0  # what a reload goes back to when its new plugins fail to start
        self.tokens: TokenStore[list[tuple[str, bytes]]] = TokenStore(settings.conf_ttl)
        self.buckets = TokenBuckets()
        self.counters = FixedWindowCounters()
        self.selector = selectors.DefaultSelector()
        self.channels: dict[int, _Channel] = {}  # by pid
        self.listener: socket.socket | None = None
        self.stopping = False
        self.exit_status = 0
        self._signals: list[int] = []
        self._started: set[int] = set()  # worker indexes that have served once
        self._vacant: dict[int, float] = {}  # index with no worker: when to start one
        self._retry_at: dict[int, float] = {}  # index whose replacement failed: next try
        self._backoff: dict[int, float] = {}  # index: the next wait before starting it again
        self._held: list[int] = []  # connection descriptors no worker can take yet
        self._recycler = (
            MemoryRecycler(settings.max_worker_memory) if settings.max_worker_memory else None
        )
        self._next_memory_check = 0.0
        self._deadline: float | None = None  # stopping: when workers still running are killed
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

    def spawn(self, index: int, predecessor: _Channel | None = None) -> _Channel:
        """Start worker ``index`` with the current plugins; with ``predecessor``, it takes
        that worker's place (and connections) once it is ready."""
        assert self.listener is not None
        ours, theirs = socket.socketpair()
        ours_fds, theirs_fds = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                ours.close()
                ours_fds.close()
                self.selector.close()
                for channel in self.channels.values():
                    channel.sock.close()
                    if channel.descriptors is not None:
                        channel.descriptors.close()
                    for fd in channel.outbox:
                        os.close(fd)
                for fd in self._held:  # connections that are not this worker's to hold open
                    os.close(fd)
                self._close_metrics_in_worker()
                status = _worker_main(
                    index, self.listener, theirs, theirs_fds, self.settings, self.plugins
                )
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(status)
        theirs.close()
        theirs_fds.close()
        ours.setblocking(False)
        ours_fds.setblocking(False)
        channel = _Channel(index, ours, pid, self.generation, ours_fds)
        self.channels[pid] = channel
        self.selector.register(ours, selectors.EVENT_READ, channel)
        self.selector.register(
            ours_fds, selectors.EVENT_READ, functools.partial(self._on_descriptors, channel)
        )
        self._vacant.pop(index, None)
        if predecessor is not None:
            channel.predecessor = predecessor
            predecessor.successor = channel
        log.info("worker %d started (pid %d)", index, pid)
        return channel

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
                self._worker_ready(channel)
                replies.append(_pack(None))
                continue
            if message[0] == "start_failed":
                self._start_failed(channel, str(message[1]))
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

    def _drop_descriptors(self, channel: _Channel) -> None:
        """That worker exited: its descriptor channel closes, once what it sent last is
        relayed; what waited to be relayed to it goes to another worker."""
        sock = channel.descriptors
        if sock is None:
            return
        self._on_descriptors(channel, selectors.EVENT_READ)
        channel.descriptors = None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()
        waiting, channel.outbox = channel.outbox, []
        self._relay(waiting, channel)

    # -- a worker's life: ready, failed to start, exited --------------------------------------

    def _worker_ready(self, channel: _Channel) -> None:
        channel.ready = True
        log.info("worker %d (pid %d) ready: its plugins started", channel.index, channel.pid)
        self._started.add(channel.index)
        self._backoff.pop(channel.index, None)  # it serves: a later failure starts over
        self._retry_at.pop(channel.index, None)
        old, channel.predecessor = channel.predecessor, None
        if old is not None and old.pid in self.channels:
            old.successor = None
            old.retiring = True
            log.info(
                "worker %d (pid %d) replaced by pid %d: passing its connections on, "
                "finishing its calls",
                old.index,
                old.pid,
                channel.pid,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(old.pid, signal.SIGUSR2)
        self._relay_held()

    def _start_failed(self, channel: _Channel, failure: str) -> None:
        """``channel``'s worker reports that a plugin's start raised (then exits)."""
        channel.start_failure = failure
        old, channel.predecessor = channel.predecessor, None
        if self.stopping:
            return
        if old is None and len(self._started) < self.settings.workers:  # the runner starts
            log.error("%s: the runner stops (exit status %d)", failure, START_FAILED)
            self.exit_status = START_FAILED
            self._begin_stop()
            return
        if old is not None:
            old.successor = None
        if old is not None and channel.generation == self._rolling_out and not self._undoing:
            reload_failed(PluginLoadError(failure))
            self._go_back()
        elif old is not None:
            log.error(
                "worker %d (pid %d) keeps serving: its replacement's %s; trying again in %gs",
                old.index,
                old.pid,
                failure,
                self._retry_later(old.index, self._retry_at),
            )
        else:
            log.error(
                "worker %d: %s; starting another in %gs",
                channel.index,
                failure,
                self._retry_later(channel.index, self._vacant),
            )

    def _retry_later(self, index: int, schedule: dict[int, float]) -> float:
        """Schedule ``index`` in ``schedule`` after its backoff (which then doubles)."""
        delay = self._backoff.get(index, RESPAWN_BACKOFF)
        self._backoff[index] = min(delay * 2, MAX_RESPAWN_BACKOFF)
        schedule[index] = time.monotonic() + delay
        return delay

    def _go_back(self) -> None:
        """A reload's plugins failed to start: the previous ones are current again (a
        worker already replaced by the new ones is replaced again, by the previous)."""
        self.generation = self._previous
        self.plugins = self._plugin_sets[self.generation]
        replaced = any(
            c.generation != self.generation and c.start_failure is None
            for c in self.channels.values()
        )
        self._rolling_out = self.generation if replaced else None
        self._undoing = replaced

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
            self._drop_descriptors(channel)
            died = not self.stopping and not channel.retiring and channel.start_failure is None
            # (counted as a restart only when it died: not stopped, not replaced, not failed)
            self._worker_exited(pid, died=died)
            self._forget_unused_plugins()
            if not died:
                if channel.retiring and not self.stopping:
                    log.info(
                        "worker %d (pid %d) finished its calls and exited (%d connections "
                        "passed on)",
                        channel.index,
                        pid,
                        channel.passed_on,
                    )
                continue
            self._worker_died(channel, status)

    def _worker_died(self, channel: _Channel, status: int) -> None:
        how = (
            f"signal {signal.Signals(-os.waitstatus_to_exitcode(status)).name}"
            if os.WIFSIGNALED(status)
            else f"status {os.waitstatus_to_exitcode(status)}"
        )
        new, old = channel.successor, channel.predecessor
        if new is not None:  # its replacement, still starting, takes the place
            new.predecessor = None
            log.warning(
                "worker %d (pid %d) died with %s (already replaced)",
                channel.index,
                channel.pid,
                how,
            )
            return
        if old is not None:  # a replacement that died before serving: the old one stays
            old.successor = None
            failure = f"worker {channel.index} died with {how} before it was ready"
            if channel.generation == self._rolling_out and not self._undoing:
                reload_failed(PluginLoadError(failure))
                self._go_back()
            else:
                log.error(
                    "worker %d (pid %d) keeps serving: its replacement (pid %d) died with %s; "
                    "trying again in %gs",
                    old.index,
                    old.pid,
                    channel.pid,
                    how,
                    self._retry_later(old.index, self._retry_at),
                )
            return
        if channel.ready:  # it served: start a new one at once
            self._backoff.pop(channel.index, None)
            self._vacant[channel.index] = time.monotonic()
            log.warning(
                "worker %d (pid %d) died with %s: starting a new one",
                channel.index,
                channel.pid,
                how,
            )
            return
        log.warning(
            "worker %d (pid %d) died with %s: starting a new one in %gs",
            channel.index,
            channel.pid,
            how,
            self._retry_later(channel.index, self._vacant),
        )

    def _forget_unused_plugins(self) -> None:
        used = {c.generation for c in self.channels.values()} | {self.generation}
        for generation in [g for g in self._plugin_sets if g not in used]:
            del self._plugin_sets[generation]

    # -- connection descriptors: from a replaced worker to its successor --

    def _on_descriptors(self, channel: _Channel, mask: int) -> None:
        sock = channel.descriptors
        if sock is None:
            return
        received: list[int] = []
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data, fds = b"", []
            received += fds
            if not data and not fds:  # the worker closed its end: it is exiting
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)
                break
        channel.passed_on += len(received)
        self._relay(received, channel)

    def _relay(self, fds: list[int], source: _Channel | None) -> None:
        """Send ``fds`` to the worker that takes them: the ready, current worker of the
        source's index, else any ready current worker; none ready: held, unread."""
        if not fds:
            return
        if self.stopping:  # every worker is stopping: the connections end here
            for fd in fds:
                os.close(fd)
            return
        ready = [
            c
            for c in self.channels.values()
            if c.ready
            and not c.retiring
            and c.generation == self.generation
            and c.descriptors is not None
            and c is not source
        ]
        if not ready:
            self._held += fds
            return
        same = [c for c in ready if source is not None and c.index == source.index]
        target = (same or ready)[0]
        target.outbox += fds
        self._send_outbox(target)

    def _relay_held(self) -> None:
        held, self._held = self._held, []
        self._relay(held, None)

    def _send_outbox(self, channel: _Channel) -> None:
        """Send what waits for ``channel``; what its queue cannot take yet stays (tried
        again every RELAY_RETRY seconds from the main loop)."""
        sock = channel.descriptors
        while channel.outbox and sock is not None:
            batch = channel.outbox[:MAX_FDS]
            try:
                socket.send_fds(sock, [b"c"], batch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:
                    return
                self._drop_descriptors(channel)  # that worker is gone: to another one
                return
            for fd in batch:
                os.close(fd)
            del channel.outbox[: len(batch)]

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
        self._previous = self.generation
        self.generation = next(self._generations)
        self.plugins = self._plugin_sets[self.generation] = {
            name: r.plugin for name, r in registry.items()
        }
        self._rolling_out = self.generation
        self._undoing = False
        log.info(
            "reloaded: %d plugins (%s); replacing the workers (%d) one by one",
            len(self.plugins),
            ", ".join(sorted(self.plugins)) or "none",
            self.settings.workers,
        )

    def _replace_next(self) -> None:
        """One step of replacing workers — those of other plugins than the current ones
        (a reload) and those to recycle — one at a time: start the successor; once it
        is ready (its plugins started) the old worker passes its connections on to it,
        finishes its calls and exits (SIGUSR2, _worker_ready); then the next."""
        if self.stopping:
            return
        live = list(self.channels.values())
        if any(c.retiring or c.predecessor is not None for c in live):
            return
        now = time.monotonic()
        for target in live:
            if (
                target.ready
                and (target.generation != self.generation or target.recycle)
                and now >= self._retry_at.get(target.index, 0.0)
            ):
                self.spawn(target.index, predecessor=target)
                return
        if self._rolling_out is not None and all(
            c.generation == self._rolling_out and c.ready for c in live
        ):
            if self._undoing:
                log.info("reload undone: every worker serves the previous plugins again")
            else:
                log.info("reload done: every worker serves the new plugins")
            self._rolling_out = None
            self._undoing = False

    def _start_vacant(self) -> None:
        """Start a worker for each index left without one, once its backoff is over."""
        now = time.monotonic()
        for index, due in list(self._vacant.items()):
            if now >= due:
                self.spawn(index)

    def _check_memory(self) -> None:
        """--max-worker-memory, every MEMORY_CHECK seconds."""
        recycler = self._recycler
        now = time.monotonic()
        if recycler is None or now < self._next_memory_check or self.stopping:
            return
        self._next_memory_check = now + MEMORY_CHECK
        candidates = {
            c.pid: c
            for c in self.channels.values()
            if c.ready
            and not c.retiring
            and not c.recycle
            and c.successor is None
            and c.generation == self.generation  # (a reload replaces the others anyway)
        }
        due = recycler.check(candidates)
        if due is None:
            return
        channel = candidates[due[0]]
        channel.recycle = True
        if self.reports is not None:
            self.reports.recycles += 1
        log.warning(
            "worker %d (pid %d) uses %.1f MiB, over --max-worker-memory %d MiB: replacing it",
            channel.index,
            channel.pid,
            due[1] / (1 << 20),
            recycler.limit >> 20,
        )

    def _reopen_log(self) -> None:
        """SIGUSR1: this process's log file, then every worker's."""
        reopen_log_file()
        for pid in self.channels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def _begin_stop(self) -> None:
        """Ask every worker to finish its calls and exit; they are killed at the deadline."""
        self.stopping = True
        self._deadline = time.monotonic() + SHUTDOWN_DEADLINE
        for pid in self.channels:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        held = self._held + [fd for c in self.channels.values() for fd in c.outbox]
        self._held = []
        for channel in self.channels.values():
            channel.outbox = []
        for fd in held:
            os.close(fd)

    def _next_timeout(self) -> float:
        """Seconds the main loop may wait for an event before something is due."""
        now = time.monotonic()
        due = [now + PARENT_CHECK]
        if self._deadline is not None:
            due.append(self._deadline)
        if not self.stopping:  # (what follows is done only while serving)
            due += self._vacant.values()
            due += [t for t in self._retry_at.values() if t > now]
            if self._recycler is not None:
                due.append(self._next_memory_check)
            if any(c.outbox for c in self.channels.values()):
                due.append(now + RELAY_RETRY)
        return max(0.0, min(due) - now)

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
                "listening on %s with %d worker%s (%d plugins: %s; conf TTL %gs)",
                settings.socket_path,
                settings.workers,
                "s" if settings.workers > 1 else "",
                len(self.plugins),
                ", ".join(sorted(self.plugins)) or "none",
                settings.conf_ttl,
            )
            while self.channels or not self.stopping:
                for key, mask in self.selector.select(self._next_timeout()):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            wake_r.recv(4096)
                    elif isinstance(key.data, _Channel):
                        self._on_readable(key.data)
                    else:  # descriptor channels and the metrics endpoint carry their handler
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
                        self._begin_stop()
                if not self.stopping and settings.parent_watch and parent_gone(parent):
                    self._begin_stop()
                self._reap()
                for channel in list(self.channels.values()):
                    if channel.outbox:
                        self._send_outbox(channel)
                if not self.stopping:
                    self._start_vacant()
                    self._check_memory()
                    self._replace_next()
                deadline = self._deadline
                if deadline is not None and time.monotonic() >= deadline and self.channels:
                    log.warning("%d workers still running: killing them", len(self.channels))
                    for pid in list(self.channels):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self._deadline = None
        finally:
            if watcher is not None:
                watcher.set()
            signal.set_wakeup_fd(old_wakeup)
            listener.close()
            self._stop_metrics()
        log.info("stopped after %.1fs", time.monotonic() - started)
        return self.exit_status

    # -- --metrics (docs/operations/monitoring.md) --

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
            return exposition(
                families(counters, gauges, reports.restarts, processes, reports.recycles)
            )

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
            self.channels.items(), key=lambda item: (item[1].index, -item[1].serial)
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
