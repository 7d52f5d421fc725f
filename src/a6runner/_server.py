"""The socket server: framing, dispatch and ExtraInfo for each APISIX connection.

Per connection APISIX keeps one call in flight. A call whose filters are all plain
functions is answered inside ``data_received`` (no task, no thread hop). When a filter
returns an awaitable (``async def``), the rest of the call runs as a task; ExtraInfo
questions it asks go out on the same connection and their answers resolve futures. The
filter chain itself, reply building and the error map are in ``_chain``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, cast

from . import _chain as chain
from ._confstore import PreparedConf, RawConf
from ._errors import ConfigError, ConfTokenNotFound, DecodeError, PeerClosed, UnexpectedFrame
from ._kernels import codec
from ._plugin import RunnerServices

log = logging.getLogger("a6runner")

# A full backlog makes a unix-socket connect fail at once with EAGAIN (nginx logs
# "Resource temporarily unavailable"): keep it large; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096
SHUTDOWN_GRACE = 0.8  # APISIX sends SIGKILL about 1 s after SIGTERM

PHASES = {codec.RPC_HTTP_REQ_CALL: chain.REQUEST, codec.RPC_HTTP_RESP_CALL: chain.RESPONSE}
FRAME_NAMES = {codec.RPC_PREPARE_CONF: "PrepareConf", codec.RPC_EXTRA_INFO: "ExtraInfo"} | {
    t: p.frame for t, p in PHASES.items()
}

Pending = Coroutine[Any, Any, None] | None


class ConfBackend(Protocol):
    """Where tokens live: this process (ConfStore) or the supervisor (_workers.py). Each
    method answers at once when it can, or returns an awaitable when it must ask."""

    def prepare(self, key: str | None, conf: RawConf) -> int | Awaitable[int]: ...

    def lookup(self, token: int) -> PreparedConf | Awaitable[PreparedConf | None] | None: ...


class Connection(asyncio.Protocol):
    """One APISIX connection."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self._confs = server.confs
        self._services = server.services
        self._splitter = codec.FrameSplitter()
        self._transport: asyncio.Transport | None = None
        # A call running as a task; frames other than ExtraInfo answers wait behind it.
        self._task: asyncio.Task[None] | None = None
        self._queued: collections.deque[tuple[int, bytes]] = collections.deque()
        self._info_waiters: collections.deque[asyncio.Future[bytes | None]] = collections.deque()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._queued.clear()
        while self._info_waiters:
            fut = self._info_waiters.popleft()
            if not fut.done():
                fut.set_exception(PeerClosed("APISIX closed the connection mid-call"))
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        for frame_type, payload in self._splitter.feed(data):
            if frame_type == codec.RPC_EXTRA_INFO:
                self._on_extra_info(payload)
            elif self._task is not None or self._queued:
                self._queued.append((frame_type, payload))
            else:
                self._dispatch(frame_type, payload)

    # -- calls ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None

    def send(self, frame: bytes) -> None:
        """Write a reply frame: every answer of this connection goes out here."""
        if self._transport is not None:
            self._transport.write(frame)

    def _dispatch(self, frame_type: int, payload: bytes) -> None:
        try:
            phase = PHASES.get(frame_type)
            if phase is not None:
                rest = self._http_call(phase, phase.decode(payload))
            elif frame_type == codec.RPC_PREPARE_CONF:
                rest = self._prepare_conf(codec.decode_prepare_conf_req(payload))
            else:
                raise UnexpectedFrame(frame_type, len(payload))
        except Exception as exc:
            self.send(chain.error_frame(exc, FRAME_NAMES.get(frame_type, "frame")))
            return
        if rest is not None:
            self._run_task(rest)

    # Each handler answers at once and returns None, or returns a coroutine that answers
    # later (the connection's task); such coroutines send their own reply and raise
    # nothing but CancelledError.

    def _prepare_conf(self, req: Any) -> Pending:
        token = self._confs.prepare(req.key, req.conf)
        if isinstance(token, int):
            self.send(codec.build_prepare_conf_resp(token))
            return None
        return self._prepared(token)

    async def _prepared(self, pending: Awaitable[int]) -> None:
        try:
            frame = codec.build_prepare_conf_resp(await pending)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            frame = chain.error_frame(exc, "PrepareConf")
        self.send(frame)

    def _http_call(self, phase: chain.Phase, decoded: Any) -> Pending:
        prepared = self._confs.lookup(decoded.conf_token)
        if isinstance(prepared, PreparedConf):
            return chain.run(phase, decoded, prepared.filters[phase.index], self, self._services)
        if prepared is None:
            self._token_not_found(phase, decoded)
            return None
        return self._lookup_then_run(phase, decoded, prepared)  # the token lives elsewhere

    async def _lookup_then_run(
        self, phase: chain.Phase, decoded: Any, pending: Awaitable[PreparedConf | None]
    ) -> None:
        try:
            prepared = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.send(chain.error_frame(exc, f"call {decoded.id} ({phase.frame})"))
            return
        if prepared is None:
            self._token_not_found(phase, decoded)
            return
        rest = chain.run(phase, decoded, prepared.filters[phase.index], self, self._services)
        if rest is not None:
            await rest

    def _token_not_found(self, phase: chain.Phase, decoded: Any) -> None:
        exc = ConfTokenNotFound(decoded.conf_token)
        self.send(chain.error_frame(exc, f"call {decoded.id} ({phase.frame})"))

    def _run_task(self, rest: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(rest)
        self._task = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:  # a bug of ours: say so
            self.send(chain.error_frame(cast(BaseException, task.exception()), "call task"))
        while self._queued and self._task is None and self._transport is not None:
            frame_type, payload = self._queued.popleft()
            self._dispatch(frame_type, payload)
        self._server.call_finished()

    # -- ExtraInfo ------------------------------------------------------------------------

    def ask(self, info_type: int, name: str | None) -> asyncio.Future[bytes | None]:
        """Send an ExtraInfo question; the future resolves with APISIX's answer."""
        if self._transport is None:
            raise PeerClosed("APISIX closed the connection mid-call")
        if self._task is None:
            raise RuntimeError(
                "ExtraInfo is only available while a call is in flight "
                "(await it from an async filter)"
            )
        # the server's loop, not asyncio.get_running_loop(): that one calls getpid() each time
        fut: asyncio.Future[bytes | None] = self._loop.create_future()
        self._info_waiters.append(fut)
        self.send(codec.build_extra_info_req(info_type, name))
        return fut

    def _on_extra_info(self, payload: bytes) -> None:
        if not self._info_waiters:
            log.warning("ExtraInfo answer with no question pending: ignored")
            return
        fut = self._info_waiters.popleft()
        try:
            result = codec.decode_extra_info_resp(payload)
        except DecodeError as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(result)


def _prepare_socket_path(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket: refusing to remove it")
    os.unlink(path)  # a stale socket from an earlier run


def bind_unix_socket(path: str, mode: int) -> socket.socket:
    """A listening unix socket at ``path`` (a stale socket there is replaced)."""
    _prepare_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """Serves APISIX connections on a listening unix socket, in the running event loop."""

    _loop: asyncio.AbstractEventLoop  # set by start()

    def __init__(
        self,
        sock: socket.socket,
        confs: ConfBackend,
        services: RunnerServices,
        accept_pause: float = 0.0,
    ) -> None:
        self.sock = sock
        self.confs = confs
        self.services = services
        # With workers sharing the socket: after each accept, leave the next ones to the
        # others for this long, so a burst of connects is shared out (and a busy worker,
        # slower to come back, takes fewer).
        self.accept_pause = accept_pause
        self.connections: set[Connection] = set()
        self._accepting = False
        self._listening = False
        self._accepts: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None

    async def start(self) -> None:
        # Our own accept, one connection per readiness event: the event loop's server
        # would drain the backlog at once, and with --workers N on one socket a burst of
        # connects would then land on whichever worker woke first.
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._listen()

    def _listen(self) -> None:
        if self._accepting and not self._listening:
            self._loop.add_reader(self.sock.fileno(), self._accept)
            self._listening = True

    def _unlisten(self) -> None:
        if self._listening:
            self._loop.remove_reader(self.sock.fileno())
            self._listening = False

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
            log.error("accept failed: %s", exc)
            return
        conn.setblocking(False)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: Connection(self), conn)
        )
        self._accepts.add(task)
        task.add_done_callback(self._accepts.discard)
        if self.accept_pause:
            self._unlisten()
            self._loop.call_later(self.accept_pause, self._listen)

    def call_finished(self) -> None:
        if self._idle is not None and not any(c.busy for c in self.connections):
            self._idle.set()

    def _busy(self) -> Iterator[Connection]:
        return (c for c in self.connections if c.busy)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish (up to ``grace`` seconds), close."""
        self._accepting = False
        self._unlisten()
        # Frames already in the socket buffers are calls in flight too: let them be read.
        await asyncio.sleep(0.05)
        self._idle = asyncio.Event()
        if any(True for _ in self._busy()):
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except asyncio.TimeoutError:
                log.warning(
                    "%d calls still running at shutdown: abandoned", sum(1 for _ in self._busy())
                )
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.close()
        await asyncio.sleep(0)


async def serve(
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
