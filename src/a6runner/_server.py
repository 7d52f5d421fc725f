"""The socket server: one asyncio protocol per APISIX connection, calls dispatched inline.

Per connection APISIX keeps one call in flight. A call whose filters are all plain
functions is answered inside ``data_received`` (no task, no thread hop). When a filter
returns an awaitable (``async def``), the rest of the call runs as a task; ExtraInfo
questions it asks go out on the same connection and their answers resolve futures.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any, Protocol, cast

from ._confstore import ConfStore, Filters, PreparedConf, RawConf
from ._errors import ConfigError, DecodeError, FrameTooLarge
from ._kernels import codec
from ._plugin import Plugin, Request, Response, RunnerServices
from ._services import LocalServices

log = logging.getLogger("a6runner")

# A full backlog makes a unix-socket connect fail at once with EAGAIN (nginx logs
# "Resource temporarily unavailable"): keep it large; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096

ERR_BAD_REQUEST = codec.build_err_resp(codec.ERR_BAD_REQUEST)
ERR_SERVICE_UNAVAILABLE = codec.build_err_resp(codec.ERR_SERVICE_UNAVAILABLE)
ERR_CONF_TOKEN_NOT_FOUND = codec.build_err_resp(codec.ERR_CONF_TOKEN_NOT_FOUND)


class ConfBackend(Protocol):
    """Where tokens live: this process (ConfStore) or the supervisor (_workers.py). Each
    method answers at once when it can, or returns an awaitable when it must ask."""

    def prepare(self, key: str | None, conf: RawConf) -> int | Awaitable[int]: ...

    def lookup(self, token: int) -> PreparedConf | Awaitable[PreparedConf | None] | None: ...


class PeerClosed(ConnectionError):
    """APISIX closed the connection while a call was waiting for ExtraInfo."""


class Connection(asyncio.Protocol):
    """One APISIX connection."""

    def __init__(self, server: Server) -> None:
        self._server = server
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

    def _write(self, frame: bytes) -> None:
        if self._transport is not None:
            self._transport.write(frame)

    def _dispatch(self, frame_type: int, payload: bytes) -> None:
        if frame_type == codec.RPC_HTTP_REQ_CALL:
            self._http_call(payload, codec.decode_http_req_call_req, Request)
        elif frame_type == codec.RPC_HTTP_RESP_CALL:
            self._http_call(payload, codec.decode_http_resp_call_req, Response)
        elif frame_type == codec.RPC_PREPARE_CONF:
            self._prepare_conf(payload)
        else:
            log.warning(
                "unknown frame type %d (%d bytes): answered BAD_REQUEST", frame_type, len(payload)
            )
            self._write(ERR_BAD_REQUEST)

    def _prepare_conf(self, payload: bytes) -> None:
        try:
            req = codec.decode_prepare_conf_req(payload)
            key, conf = req.key, req.conf
        except DecodeError as exc:
            log.warning("undecodable PrepareConf: %s", exc)
            self._write(ERR_BAD_REQUEST)
            return
        try:
            token = self._confs.prepare(key, conf)
        except Exception:
            log.exception("PrepareConf failed")
            self._write(ERR_SERVICE_UNAVAILABLE)
            return
        if isinstance(token, int):
            self._write(codec.build_prepare_conf_resp(token))
        else:
            self._run_task(self._prepare_conf_async(token))

    async def _prepare_conf_async(self, pending: Awaitable[int]) -> None:
        try:
            self._write(codec.build_prepare_conf_resp(await pending))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("PrepareConf failed")
            self._write(ERR_SERVICE_UNAVAILABLE)

    def _http_call(
        self,
        payload: bytes,
        decode: Callable[[bytes], Any],
        call_type: type[Request | Response],
    ) -> None:
        try:
            decoded = decode(payload)
        except DecodeError as exc:
            log.warning("undecodable %s call: %s", call_type.__name__, exc)
            self._write(ERR_BAD_REQUEST)
            return
        prepared = self._confs.lookup(decoded.conf_token)
        if prepared is None or isinstance(prepared, PreparedConf):
            rest = self._start_call(decoded, prepared, call_type)
            if rest is not None:
                self._run_task(rest)
        else:  # the token lives in the supervisor: finish in a task
            self._run_task(self._lookup_then_run(prepared, decoded, call_type))

    async def _lookup_then_run(
        self,
        pending: Awaitable[PreparedConf | None],
        decoded: Any,
        call_type: type[Request | Response],
    ) -> None:
        try:
            prepared = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("conf token lookup failed")
            self._write(ERR_SERVICE_UNAVAILABLE)
            return
        rest = self._start_call(decoded, prepared, call_type)
        if rest is not None:
            await rest

    def _start_call(
        self,
        decoded: Any,
        prepared: PreparedConf | None,
        call_type: type[Request | Response],
    ) -> Coroutine[Any, Any, None] | None:
        """Run the filters inline and answer; if a filter returns an awaitable, return a
        coroutine that finishes the call (the caller runs it as the connection's task)."""
        if prepared is None:
            log.info("conf token %d not found (call %d)", decoded.conf_token, decoded.id)
            self._write(ERR_CONF_TOKEN_NOT_FOUND)
            return None
        call = call_type(decoded, self, self._services)
        filters = prepared.request_filters if call_type is Request else prepared.response_filters
        try:
            for i, (filt, conf) in enumerate(filters):
                pending = filt(conf, call)
                # a filter's return value matters only when it is awaitable
                if pending is not None and inspect.isawaitable(pending):
                    return self._finish_call(call, filters, i, pending)
                if call.ends_chain:
                    break
            reply = call.build_reply()
        except Exception as exc:
            reply = self._failed(call, exc)
        self._write(reply)
        return None

    async def _finish_call(
        self,
        call: Request | Response,
        filters: Filters,
        index: int,
        pending: Awaitable[None],
    ) -> None:
        try:
            await pending
            if not call.ends_chain:
                for filt, conf in filters[index + 1 :]:
                    result = filt(conf, call)
                    if result is not None and inspect.isawaitable(result):
                        await result
                    if call.ends_chain:
                        break
            reply = call.build_reply()
        except asyncio.CancelledError:
            raise
        except PeerClosed:
            log.info("call %d abandoned: APISIX closed the connection", call.id)
            return
        except Exception as exc:
            reply = self._failed(call, exc)
        self._write(reply)

    def _failed(self, call: Request | Response, exc: Exception) -> bytes:
        if isinstance(exc, FrameTooLarge):
            log.error(
                "call %d: reply too large to frame (%s): answered SERVICE_UNAVAILABLE", call.id, exc
            )
        else:
            log.error(
                "call %d: plugin raised %s: answered SERVICE_UNAVAILABLE",
                call.id,
                type(exc).__name__,
                exc_info=exc,
            )
        return ERR_SERVICE_UNAVAILABLE

    def _run_task(self, coro: Any) -> None:
        task = self._server._loop.create_task(coro)
        self._task = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error in a call", exc_info=task.exception())
            self._write(ERR_SERVICE_UNAVAILABLE)
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
        fut: asyncio.Future[bytes | None] = self._server._loop.create_future()
        self._info_waiters.append(fut)
        self._write(codec.build_extra_info_req(info_type, name))
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


def single_process_backends(
    plugins: Mapping[str, Plugin], ttl: float, clock: Callable[[], float] = time.monotonic
) -> tuple[ConfBackend, RunnerServices]:
    """Conf tokens and token buckets kept in this process (``clock``: see run_runner)."""
    return ConfStore(plugins, ttl, clock), LocalServices(clock)
