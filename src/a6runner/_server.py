"""The socket server: framing, dispatch and ExtraInfo for each APISIX connection.

Per connection APISIX keeps one call in flight. A call whose filters are all plain
functions is answered inside ``data_received`` (no task, no thread hop). When a filter
returns an awaitable (``async def``), the rest of the call runs as a task; ExtraInfo
questions it asks go out on the same connection and their answers resolve futures. The
filter chain itself, reply building and the error map are in ``_chain``.

Whatever the peer does, memory stays bounded and every frame gets an answer or a close:
a connection whose replies are not being read is not read either (write back-pressure);
frames that arrive while a call runs wait, and the connection is not read meanwhile;
frames arriving, queued or held by calls, and replies the peer has not read, share a
per-process budget (``Limits.memory``, see MemoryBudget): a connection whose frame would
exceed it waits, unread, until others finish (the kernel buffers the rest), and beyond
it the connection with the most unread replies is closed; a call that outlives
``Limits.call_timeout`` is ended, and a frame that stops arriving part-way for
``Limits.frame_timeout`` closes its connection.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import operator
import os
import socket
import stat
import sys
import termios
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, cast

from . import _chain as chain
from ._confstore import PreparedConf, Question, RawConf
from ._errors import (
    CallTimeout,
    ConfigError,
    ConfTokenNotFound,
    DecodeError,
    PeerClosed,
    UnexpectedFrame,
)
from ._kernels import codec, meter
from ._lifecycle import RETIRE_STOP_GRACE, STOP_GRACE, PluginLifecycle
from ._paths import socket_path_error
from ._plugin import Plugin, RunnerServices
from ._pressure import CpuPressure
from ._services import PolicyServices
from ._settings import DEFAULT_LIMITS, Limits
from ._watchdog import StallWatchdog

log = logging.getLogger("a6runner")

# A full backlog makes a unix-socket connect fail at once with EAGAIN (nginx logs
# "Resource temporarily unavailable"): keep it large; the kernel caps it at somaxconn.
LISTEN_BACKLOG = 4096
# APISIX sends SIGKILL about 1 s after SIGTERM. A stop waits DRAIN_PAUSE for frames
# already sent, then up to SHUTDOWN_GRACE for the calls in flight, then up to STOP_GRACE
# for the plugins' stop hooks: SHUTDOWN_DEADLINE in all (the supervisor kills a worker
# still running then), with room to exit before APISIX's SIGKILL.
DRAIN_PAUSE = 0.05
SHUTDOWN_GRACE = 0.7
SHUTDOWN_DEADLINE = DRAIN_PAUSE + SHUTDOWN_GRACE + STOP_GRACE + 0.05
RETIRE_POLL = 0.005  # seconds between looks for connections gone idle, when retiring
DEADLINE_SWEEP = 1.0  # seconds between checks of the calls' deadlines
# The most one read of a socket returns (uvloop's and asyncio's transports): a frame this
# large arrived in several reads, each reserved from the memory budget; calls that hold
# one keep it counted (smaller ones are left out: counting them would cost every call).
READ_SIZE = 256 << 10
ACCEPT_RETRY = 0.1  # seconds without accepting after running out of file descriptors
# Seconds between checks that APISIX, which started the runner, is still there: an
# orphaned runner exits within this plus the shutdown grace.
PARENT_CHECK = 0.5

PHASES = {codec.RPC_HTTP_REQ_CALL: chain.REQUEST, codec.RPC_HTTP_RESP_CALL: chain.RESPONSE}
FRAME_NAMES = {codec.RPC_PREPARE_CONF: "PrepareConf", codec.RPC_EXTRA_INFO: "ExtraInfo"} | {
    t: p.frame for t, p in PHASES.items()
}

Pending = Coroutine[Any, Any, None] | None
PrefetchSlot = tuple[chain.Call, Question, Callable[[], Pending] | None]
InfoWaiter = asyncio.Future[bytes | None] | PrefetchSlot

# Why a connection is not being read (bit flags; reading resumes when none is left).
_PEER_NOT_READING = 1  # our replies pile up in the transport: above its high-water mark
_FRAMES_WAITING = 2  # frames wait behind the call in flight
_NO_FRAME_MEMORY = 4  # the frame it is receiving does not fit the budget yet
_MEMORY_FULL = 8  # connections were closed over the memory budget: until the loop's next turn

# Why the runner cancelled a call's task (Connection.cancel_reason).
DEADLINE = "deadline"
CLOSED = "closed"


class ConfBackend(Protocol):
    """Where tokens live: this process (ConfStore) or the supervisor (_workers.py). Each
    method answers at once when it can, or returns an awaitable when it must ask."""

    def prepare(self, key: str | None, conf: RawConf) -> int | Awaitable[int]: ...

    def lookup(self, token: int) -> PreparedConf | Awaitable[PreparedConf | None] | None: ...


class MemoryBudget:
    """The per-process budget for everything held for connections (``Limits.memory``).

    Frames: a connection reserves the declared size of the frame it is receiving (known
    from its header) plus what waits in its queue, and holds the frames and ExtraInfo
    answers of READ_SIZE or more handed to a call that outlives ``data_received`` until
    that call ends. Frames may take half of the budget: a reservation that does not fit
    makes the connection wait, unread, in arrival order. When every byte held belongs to
    waiting connections, the oldest goes anyway, so some frame always completes and frees
    room; a connection that holds frame memory while its peer does not read our replies
    (APISIX reads every reply before it sends another frame) is closed to make room.

    Replies: once a connection's unsent replies pass the transport's high-water mark,
    they are counted until the peer has read them. When frames and replies together pass
    the budget, the connection with the most unread reply bytes is closed, and reading
    stops everywhere until the next turn of the event loop (when the transports of closed
    connections have let go of their buffers), so that no other reply is built meanwhile."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frame_limit = limit // 2
        self.frames = 0  # bytes of frames reserved, queued and held by calls
        self.replies = 0  # unread reply bytes counted
        self._waiting: collections.deque[Connection] = collections.deque()
        self._waiting_held = 0  # frame bytes held by the waiting connections
        self._repliers: set[Connection] = set()  # connections whose peer is not reading
        self._reads_stopped = False

    # -- frames -----------------------------------------------------------------------------

    def update(self, conn: Connection, need: int) -> None:
        """``conn`` needs ``need`` bytes for the frame it receives and its queue."""
        if conn._waiting_for_memory:
            conn._memory_wanted = need
            return
        grow = need - conn._memory_held
        if grow <= 0 or self.frames + grow <= self.frame_limit:
            self.frames += grow
            conn._memory_held = need
            if grow < 0 and self._waiting:
                self._admit()
            return
        conn._waiting_for_memory = True
        conn._memory_wanted = need
        self._waiting.append(conn)
        self._waiting_held += conn._memory_held + conn._call_held
        conn._pause(_NO_FRAME_MEMORY)
        self._admit()

    def hold_for_call(self, conn: Connection, size: int) -> None:
        """A frame of ``size`` bytes (at least READ_SIZE) went to ``conn``'s call, which
        goes on after data_received: it stays counted until the call ends."""
        self.frames += size
        conn._call_held += size

    def call_ended(self, conn: Connection) -> None:
        self.frames -= conn._call_held
        if conn._waiting_for_memory:
            self._waiting_held -= conn._call_held
        conn._call_held = 0
        if self._waiting:
            self._admit()

    def release(self, conn: Connection) -> None:
        """``conn`` is gone: everything it held is free."""
        if conn._waiting_for_memory:
            self._waiting.remove(conn)
            self._waiting_held -= conn._memory_held + conn._call_held
            conn._waiting_for_memory = False
        self.frames -= conn._memory_held + conn._call_held
        conn._memory_held = conn._call_held = 0
        self._uncount_replies(conn)
        self._admit()

    def _admit(self) -> None:
        while self._waiting:
            conn = self._waiting[0]
            grow = conn._memory_wanted - conn._memory_held
            if self.frames + grow > self.frame_limit and self.frames != self._waiting_held:
                self._close_frame_holder_not_read()
                return
            self._waiting.popleft()
            self._waiting_held -= conn._memory_held + conn._call_held
            self.frames += grow
            conn._memory_held = conn._memory_wanted
            conn._waiting_for_memory = False
            conn._resume(_NO_FRAME_MEMORY)

    def _close_frame_holder_not_read(self) -> None:
        """Frames wait: a connection that holds frame memory while its peer does not read
        our replies (so it is not read either) will not free it: close it."""
        holders = [c for c in self._repliers if c._memory_held and c.open]
        if holders:
            victim = max(holders, key=_unread_reply_bytes)
            victim._close_for_memory(
                f"it holds {_mib(victim._memory_held)} of frame memory that other "
                "connections wait for, and its peer does not read our replies"
            )

    # -- replies ------------------------------------------------------------------------------

    def count_replies(self, conn: Connection) -> None:
        """Count ``conn``'s unsent replies (its peer is not reading: they passed the
        transport's high-water mark) and keep the total within the budget."""
        self._repliers.add(conn)
        self._recount(conn)
        if self.frames + self.replies > self.limit:
            self._make_room(conn)

    def replies_read(self, conn: Connection) -> None:
        """``conn``'s peer has read its replies (down to the low-water mark)."""
        self._uncount_replies(conn)

    def recount(self) -> None:
        """For the sweep: peers have read part of what they owed meanwhile."""
        for conn in self._repliers:
            self._recount(conn)
        if self._waiting:
            self._admit()

    def _recount(self, conn: Connection) -> None:
        transport = conn._transport
        size = transport.get_write_buffer_size() if transport is not None else 0
        self.replies += size - conn._reply_held
        conn._reply_held = size

    def _uncount_replies(self, conn: Connection) -> None:
        self._repliers.discard(conn)
        self.replies -= conn._reply_held
        conn._reply_held = 0

    def _make_room(self, conn: Connection) -> None:
        for replier in self._repliers:
            self._recount(replier)
        closed = False
        while self.frames + self.replies > self.limit:
            candidates = [c for c in self._repliers if c.open]
            if not candidates:
                break
            victim = max(candidates, key=_unread_reply_bytes)
            victim._close_for_memory(
                f"its peer has not read {_mib(victim._reply_held)} of replies, the most of "
                f"any connection, and the memory held for connections passed "
                f"{_mib(self.limit)} (--max-memory)"
            )
            closed = True
        if closed and not self._reads_stopped:
            # The transports let go of closed connections' buffers at the end of this
            # turn of the event loop: until then, no connection builds another reply.
            self._reads_stopped = True
            connections = conn._server.connections
            for c in connections:
                c._pause(_MEMORY_FULL)
            conn._loop.call_soon(self._resume_reads, connections)

    def _resume_reads(self, connections: set[Connection]) -> None:
        self._reads_stopped = False
        for c in list(connections):
            c._resume(_MEMORY_FULL)


_unread_reply_bytes = operator.attrgetter("_reply_held")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class Connection(asyncio.Protocol):
    """One APISIX connection."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self._confs = server.confs
        self._services = server.services
        self._memory = server.memory
        self._splitter = codec.FrameSplitter()
        self._transport: asyncio.Transport | None = None
        # --metrics: what this connection's calls are counted by (None: not counted)
        counts = server.call_counts
        self._meter = meter.CallMeter(counts) if counts is not None else None
        # A call in flight past data_received (waiting for its prefetched ExtraInfo, or
        # running as a task): frames other than ExtraInfo answers wait behind it.
        self._in_call = False
        self._task: asyncio.Task[None] | None = None
        self._call_started = 0.0  # loop time that call began
        self.cancel_reason: str | None = None  # set when the runner cancels the task
        self.call_timeout = server.limits.call_timeout
        self._keep_polling = server.keep_polling if server.limits.busy_poll > 0 else None
        self._queued: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queued_bytes = 0
        # One per ExtraInfo question sent, in order: a future (asked from a task), or a
        # prefetch slot (call, question, what to do after the last answer).
        self._info_waiters: collections.deque[InfoWaiter] = collections.deque()
        self._prefetching = False  # prefetched answers still to come: they end the call
        self._prefetch_error: BaseException | None = None
        self._paused = 0  # why reading is paused (the _PEER_NOT_READING... flags)
        self._peer_not_reading = False
        self._memory_held = 0  # reserved for the frame arriving and the frames queued
        self._memory_wanted = 0
        self._waiting_for_memory = False
        self._call_held = 0  # frames handed to the call in flight, held until it ends
        self._reply_held = 0  # unread reply bytes counted (once past the high-water mark)
        # --frame-timeout: the frame's progress at the last sweep, and when it last grew
        self._stall_mark = -1
        self._stall_since = 0.0
        self.calls_ended = 0  # calls past data_received that ended (a reload waits on them)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._queued.clear()
        self._queued_bytes = 0
        self._memory.release(self)
        while self._info_waiters:
            waiter = self._info_waiters.popleft()
            if isinstance(waiter, asyncio.Future) and not waiter.done():  # prefetches: dropped
                waiter.set_exception(PeerClosed("APISIX closed the connection mid-call"))
        if self._task is not None:
            self.cancel_reason = CLOSED
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        keep_polling = self._keep_polling
        if keep_polling is not None:
            keep_polling()
        metered = self._meter
        if metered is not None and not self._info_waiters and not self._splitter.pending:
            metered.first_byte()  # this read begins a call
        for frame_type, payload in self._splitter.feed(data):
            if self._info_waiters:
                if frame_type == codec.RPC_EXTRA_INFO:
                    self._on_extra_info(payload)
                    continue
                self._protocol_violation(frame_type)
                return
            if self._in_call or self._peer_not_reading or self._queued:
                self._queued.append((frame_type, payload))
                self._queued_bytes += len(payload)
            else:
                self._dispatch(frame_type, payload)
        if self._queued:
            self._pause(_FRAMES_WAITING)
        need = self._splitter.expected + self._queued_bytes
        if need or self._memory_held:
            self._memory.update(self, need)

    def pause_writing(self) -> None:
        self._peer_not_reading = True
        self._pause(_PEER_NOT_READING)
        self._memory.count_replies(self)

    def resume_writing(self) -> None:
        self._peer_not_reading = False
        self._memory.replies_read(self)
        self._resume(_PEER_NOT_READING)
        self._dispatch_queued()

    # -- reading, paused and resumed ------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._transport is not None:
                self._transport.resume_reading()

    def _protocol_violation(self, frame_type: int) -> None:
        log.warning(
            "connection closed: a frame of type %d arrived while a call was waiting for an "
            "ExtraInfo answer (APISIX never does that)",
            frame_type,
        )
        if self._transport is not None:
            self._transport.abort()

    # -- calls ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._in_call

    def idle_and_drained(self) -> bool:
        """No call in flight and nothing received but not yet handled: not a frame queued
        or half-read, not a byte unread in the socket (closing now loses no call)."""
        if self._in_call or self._queued or self._splitter.pending or self._transport is None:
            return False
        return self._unread_bytes() == 0

    def _unread_bytes(self) -> int:
        """Bytes the peer sent that wait in the socket buffer (0 once the socket is gone)."""
        if self._transport is None:
            return 0
        sock = self._transport.get_extra_info("socket")
        try:
            unread = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, AttributeError):
            return 0  # the socket is gone already
        return int.from_bytes(unread, sys.byteorder)

    @property
    def open(self) -> bool:
        """Not closed, nor closing."""
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def detach(self) -> int | None:
        """When this connection holds nothing of APISIX's — no call in flight, no frame
        queued or half-read, no reply left unsent — let it go without closing the socket:
        a duplicate of its descriptor for another process to serve (bytes APISIX sent
        meanwhile wait in the socket for it), or None while it holds something. The
        transport is dropped without shutdown(), which would end the socket for both."""
        transport = self._transport
        if (
            transport is None
            or self._in_call
            or self._queued
            or self._splitter.pending
            or transport.get_write_buffer_size()
        ):
            return None
        if transport.is_reading():  # (nothing is read from here on)
            transport.pause_reading()
        fd = os.dup(transport.get_extra_info("socket").fileno())
        transport.abort()
        return fd

    def send(self, frame: bytes) -> None:
        """Write a reply frame: every answer of this connection goes out here."""
        if self._transport is not None:
            self._transport.write(frame)
        metered = self._meter
        if metered is not None:
            metered.sent(frame)

    def _dispatch(self, frame_type: int, payload: bytes) -> None:
        metered = self._meter
        if metered is not None:
            metered.started(frame_type)
        try:
            phase = PHASES.get(frame_type)
            if phase is not None:
                rest = self._http_call(phase, phase.decode(payload))
            elif frame_type == codec.RPC_PREPARE_CONF:
                rest = self._prepare_conf(codec.decode_prepare_conf_req(payload))
            else:
                raise UnexpectedFrame(frame_type, len(payload))
        except BaseException as exc:  # a plugin's parse_conf may raise anything
            self.send(chain.error_frame(exc, FRAME_NAMES.get(frame_type, "frame")))
            return
        if rest is not None:
            self._run_task(rest)
        if self._in_call and len(payload) >= READ_SIZE:  # held by a call that goes on
            self._memory.hold_for_call(self, len(payload))

    def _dispatch_queued(self) -> None:
        while (
            self._queued
            and not self._in_call
            and not self._peer_not_reading
            and self._transport is not None
        ):
            frame_type, payload = self._queued.popleft()
            self._queued_bytes -= len(payload)
            self._dispatch(frame_type, payload)
        if not self._queued:
            self._resume(_FRAMES_WAITING)
        if self._memory_held:
            self._memory.update(self, self._splitter.expected + self._queued_bytes)

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
        except BaseException as exc:
            frame = chain.error_frame(exc, "PrepareConf")
        self.send(frame)

    def _http_call(self, phase: chain.Phase, decoded: Any) -> Pending:
        prepared = self._confs.lookup(decoded.conf_token)
        if isinstance(prepared, PreparedConf):
            i = phase.index
            return chain.run(
                phase, decoded, prepared.filters[i], prepared.prefetch[i], self, self._services
            )
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
        except BaseException as exc:  # parse_conf runs here for a token met first
            self.send(chain.error_frame(exc, f"call {decoded.id} ({phase.frame})"))
            return
        if prepared is None:
            self._token_not_found(phase, decoded)
            return
        i = phase.index
        rest = chain.run(
            phase, decoded, prepared.filters[i], prepared.prefetch[i], self, self._services
        )
        if rest is not None:
            await rest

    def _token_not_found(self, phase: chain.Phase, decoded: Any) -> None:
        exc = ConfTokenNotFound(decoded.conf_token)
        self.send(chain.error_frame(exc, f"call {decoded.id} ({phase.frame})"))

    def _enter_call(self) -> None:
        if not self._in_call:
            self._in_call = True
            self._call_started = self._loop.time()

    def _run_task(self, rest: Coroutine[Any, Any, None]) -> None:
        self._enter_call()
        task = self._loop.create_task(rest)
        self._task = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        reason, self.cancel_reason = self.cancel_reason, None
        if task.cancelled():
            if reason != CLOSED:  # ended before the chain could answer: answer for it
                exc: BaseException = CallTimeout(None, self.call_timeout)
                if reason is None:
                    exc = RuntimeError("the call's task was cancelled by someone else")
                self.send(chain.error_frame(exc, "call"))
        elif task.exception() is not None:  # a bug of ours: say so, answer anyway
            self.send(chain.error_frame(cast(BaseException, task.exception()), "call task"))
        if not self._prefetching:  # (a task that met its token first may end in a prefetch)
            self._call_done()

    def _call_done(self) -> None:
        self._in_call = False
        self.calls_ended += 1
        if self._call_held:
            self._memory.call_ended(self)
        if self._peer_not_reading:  # the call's reply is unread too
            self._memory.count_replies(self)
        self._dispatch_queued()
        self._server.call_finished(self)

    def check_deadline(self, now: float, timeout: float) -> None:
        """End the call in flight if it began more than ``timeout`` seconds ago."""
        if not self._in_call or now - self._call_started < timeout:
            return
        task = self._task
        if self._info_waiters or task is None:
            log.warning("no ExtraInfo answer within %gs (call timeout): connection closed", timeout)
            self._abort()
        elif self.cancel_reason is None:
            self.cancel_reason = DEADLINE
            task.cancel()
        elif now - self._call_started >= timeout + DEADLINE_SWEEP:
            log.warning("a call ignored its cancellation at the call timeout: connection closed")
            self._abort()

    def check_frame(self, now: float, timeout: float) -> None:
        """Close the connection when the frame it is receiving has not grown for
        ``timeout`` seconds while the runner reads it (bytes waiting in the socket buffer
        count: they are read next). Not reading it stops the clock: while it waits for
        frame memory, for its peer to read our replies, or for the call in flight to end
        (unless that call waits for an ExtraInfo answer)."""
        pending = self._splitter.pending
        if not pending or self._paused or (self._in_call and not self._info_waiters):
            self._stall_mark = -1
            return
        mark = pending + self._unread_bytes()
        if mark != self._stall_mark:
            self._stall_mark, self._stall_since = mark, now
        elif now - self._stall_since >= timeout:
            log.warning(
                "connection closed: a frame stopped arriving (%d of its %d bytes came, then "
                "nothing for %gs: --frame-timeout)",
                pending,
                self._splitter.expected,
                timeout,
            )
            self._abort()

    def _close_for_memory(self, why: str) -> None:
        log.warning("connection closed: %s", why)
        self._memory.replies_read(self)  # the transport drops them
        self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- ExtraInfo ------------------------------------------------------------------------

    def ask(self, info_type: int, name: str | None) -> asyncio.Future[bytes | None]:
        """Send an ExtraInfo question; the future resolves with APISIX's answer."""
        self._check_can_ask()
        # the server's loop, not asyncio.get_running_loop(): that one calls getpid() each time
        fut: asyncio.Future[bytes | None] = self._loop.create_future()
        self._info_waiters.append(fut)
        self.send(codec.build_extra_info_req(info_type, name))
        return fut

    def ask_many(
        self, questions: Sequence[tuple[int, str | None]]
    ) -> list[Awaitable[bytes | None]]:
        """Send every question in one write; the futures resolve in the same order."""
        self._check_can_ask()
        futures: list[Awaitable[bytes | None]] = []
        for _ in questions:
            fut: asyncio.Future[bytes | None] = self._loop.create_future()
            self._info_waiters.append(fut)
            futures.append(fut)
        self.send(b"".join([codec.build_extra_info_req(t, n) for t, n in questions]))
        return futures

    def _check_can_ask(self) -> None:
        if self._transport is None:
            raise PeerClosed("APISIX closed the connection mid-call")
        if self._task is None:
            raise RuntimeError(
                "ExtraInfo is only available while a call is in flight "
                "(await it from an async filter)"
            )

    def prefetch(
        self,
        call: chain.Call,
        questions: tuple[Question, ...],
        then: Callable[[], Coroutine[Any, Any, None] | None],
    ) -> None:
        """Send ``questions`` in one write; after the last answer, go on with ``then()``."""
        self._enter_call()
        self._prefetching = True
        waiters = self._info_waiters
        for question in questions[:-1]:
            waiters.append((call, question, None))
        waiters.append((call, questions[-1], then))
        self.send(b"".join([codec.build_extra_info_req(t, n) for t, n in questions]))

    def _on_extra_info(self, payload: bytes) -> None:
        if len(payload) >= READ_SIZE and self._in_call:  # the call's until it ends
            self._memory.hold_for_call(self, len(payload))
        waiter = self._info_waiters.popleft()
        if type(waiter) is tuple:
            call, (info_type, name), then = waiter
            try:
                call._remember(info_type, name, codec.decode_extra_info_resp(payload))
            except DecodeError as exc:
                self._prefetch_error = exc
            if then is not None:
                self._prefetched(call, then)
            return
        fut = cast("asyncio.Future[bytes | None]", waiter)
        try:
            result = codec.decode_extra_info_resp(payload)
        except DecodeError as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(result)

    def _prefetched(
        self, call: chain.Call, then: Callable[[], Coroutine[Any, Any, None] | None]
    ) -> None:
        """Every prefetched answer is in: the call goes on, inline."""
        self._prefetching = False
        error, self._prefetch_error = self._prefetch_error, None
        if error is not None:
            self.send(chain.error_frame(error, f"call {call.id} (ExtraInfo answer)"))
            rest = None
        else:
            rest = then()
        if rest is not None:
            self._run_task(rest)
        else:
            self._call_done()


def _prepare_socket_path(path: str) -> None:
    """Make room for our socket: remove a stale socket, never a live one or another file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket: refusing to remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # a stale socket from an earlier run: nobody accepts on it
        return
    except FileNotFoundError:
        return  # gone meanwhile
    except BlockingIOError:
        pass  # a full backlog: something is listening
    except OSError as exc:
        raise ConfigError(
            f"{path} is a socket and connecting to it failed ({exc.strerror}): cannot tell "
            "whether another runner serves it, so it is left alone"
        ) from None
    finally:
        probe.close()
    raise ConfigError(
        f"another runner is serving {path} (it accepts connections): stop it first, or "
        "listen on another path"
    )


class Listener:
    """The listening unix socket and the file it created (removed at exit only if it is
    still ours: a later runner may have taken the path over after we stopped serving)."""

    def __init__(self, path: str, mode: int, group: int | None = None) -> None:
        _prepare_socket_path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                raise socket_path_error(exc, path) from None
            if group is not None:
                try:
                    os.chown(path, -1, group)
                except PermissionError:
                    os.unlink(path)
                    raise ConfigError(
                        f"cannot give the socket {path} to group {group}: only root, or a "
                        "member of that group, may (see --socket-group)"
                    ) from None
            os.chmod(path, mode)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
            st = os.stat(path)
        except BaseException:
            sock.close()
            raise
        self.path = path
        self.sock = sock
        self._identity = (st.st_dev, st.st_ino)

    def close(self) -> None:
        self.sock.close()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            os.unlink(self.path)


class HandOff(Protocol):
    """How a ``--workers`` worker passes its connections on when it is replaced, and takes
    those of the worker it replaces (_workers.py: descriptors through the supervisor)."""

    def receive(self, server: Server) -> None:
        """From now on, every connection passed to this process is adopted by ``server``."""

    def send(self, fd: int) -> None:
        """Pass on the connection ``fd`` (a descriptor this process owns from now on)."""

    async def flush(self) -> None:
        """Until every connection passed on has left this process."""


class CallObserver(Protocol):
    """What ``serve()`` does with an observer (metrics, tracing, debug logging:
    ``_observe.Observer``, which subclasses Connection: a protocol keeps the import one
    way)."""

    def attach(self, server: Server) -> None:
        """Before the first connection: from now on, observe ``server``'s calls."""

    def detach(self) -> None:
        """When serving ends, whatever ended it."""


class Server:
    """Serves APISIX connections on a listening unix socket, in the running event loop."""

    _loop: asyncio.AbstractEventLoop  # set by start()

    def __init__(
        self,
        sock: socket.socket,
        confs: ConfBackend,
        services: RunnerServices,
        accept_pause: float = 0.0,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self.confs = confs
        self.services = services
        self.limits = limits
        self.memory = MemoryBudget(limits.memory)
        self.clock = clock  # what the sweep times stalled frames by (tests move a fake one)
        # With workers sharing the socket: after each accept, leave the next ones to the
        # others for this long, so a burst of connects is shared out (and a busy worker,
        # slower to come back, takes fewer).
        self.accept_pause = accept_pause
        self.connections: set[Connection] = set()
        # What each accepted connection is (an observer's subclass when --otel or debug
        # logging are on), and what its calls are counted into (--metrics): _observe.py.
        self.connection_factory: Callable[[Server], Connection] = Connection
        self.call_counts: meter.CallCounts | None = None
        self._accepting = False
        self._listening = False
        self._out_of_fds = False
        self._accepts: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None
        self._hand_off: HandOff | None = None  # set while retiring with a successor
        self._retire_deadline = 0.0
        self.hurried = False  # shutdown came while retiring (shorten_retire)
        self._closed = False  # stop() closed the connections: none is adopted any more
        self._deadlines: asyncio.TimerHandle | None = None
        self.polling = False  # --busy-poll: the loop is kept polling (see keep_polling)
        self._last_read = 0.0
        self.pressure = CpuPressure()  # --busy-poll polls only while a CPU is free

    async def start(self) -> None:
        # Our own accept, one connection per readiness event: the event loop's server
        # would drain the backlog at once, and with --workers N on one socket a burst of
        # connects would then land on whichever worker woke first.
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._listen()
        self._deadlines = self._loop.call_later(DEADLINE_SWEEP, self._check_deadlines)

    def keep_polling(self) -> None:
        """--busy-poll, on every read: until ``limits.busy_poll`` seconds pass with no
        read, keep one callback scheduled, so that the event loop polls its sockets
        without sleeping (epoll with a zero timeout) instead of blocking until the next frame
        arrives. A blocked process lets its CPU go idle, and waking it when a frame comes
        costs tens of µs on a VM: at low concurrency that is most of a call's latency. The
        price is the polling's CPU, which a loaded machine needs elsewhere: so no polling
        starts while other tasks are waiting for a CPU (_pressure.py)."""
        now = self._last_read = self._loop.time()
        if not self.polling and not self.pressure.contended(now):
            self.polling = True
            self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        if self._loop.time() - self._last_read < self.limits.busy_poll:
            self._loop.call_soon(self._poll)
        else:
            self.polling = False

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
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # The listening socket stays readable: wait instead of spinning on it.
                if not self._out_of_fds:
                    log.error("accept failed: %s: not accepting for %gs", exc, ACCEPT_RETRY)
                self._out_of_fds = True
                self._unlisten()
                self._loop.call_later(ACCEPT_RETRY, self._listen)
            else:
                log.error("accept failed: %s", exc)
            return
        if self._out_of_fds:
            log.info("accepting again")
            self._out_of_fds = False
        self._serve_socket(conn)
        if self.accept_pause:
            self._unlisten()
            self._loop.call_later(self.accept_pause, self._listen)

    def _serve_socket(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: self.connection_factory(self), conn)
        )
        self._accepts.add(task)
        task.add_done_callback(self._accepts.discard)

    def adopt(self, conn: socket.socket) -> None:
        """Serve ``conn``, a connection another worker let go (Connection.detach) exactly
        like one accepted here: what APISIX sent meanwhile waits in it, unread."""
        if self._closed:
            conn.close()
        else:
            self._serve_socket(conn)

    def _check_deadlines(self) -> None:
        """Once a second: calls past the call timeout, frames stalled past the frame
        timeout, and the unread replies counted again."""
        now, stall_now = self._loop.time(), self.clock()
        call_timeout, frame_timeout = self.limits.call_timeout, self.limits.frame_timeout
        for conn in list(self.connections):
            if call_timeout > 0:
                conn.check_deadline(now, call_timeout)
            if frame_timeout > 0:
                conn.check_frame(stall_now, frame_timeout)
        self.memory.recount()
        self._deadlines = self._loop.call_later(DEADLINE_SWEEP, self._check_deadlines)

    def call_finished(self, conn: Connection) -> None:
        if self._hand_off is not None:  # retiring: pass it on as soon as its reply is out
            self._loop.call_soon(self._pass_on, conn)
        if self._idle is not None and not any(c.busy for c in self.connections):
            self._idle.set()

    def calls_in_flight(self) -> list[tuple[Connection, int]]:
        """Each connection with a call in flight now, with its count of ended calls."""
        return [(c, c.calls_ended) for c in self.connections if c.busy]

    def still_running(self, calls: list[tuple[Connection, int]]) -> bool:
        """Whether one of ``calls`` (from calls_in_flight) has neither ended nor lost its
        connection."""
        return any(c.calls_ended == n and c in self.connections for c, n in calls)

    def _busy_count(self) -> int:
        return sum(1 for c in self.connections if c.busy)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish (up to ``grace`` seconds), close."""
        self._accepting = False
        self._unlisten()
        # Frames already in the socket buffers are calls in flight too: let them be read.
        await asyncio.sleep(DRAIN_PAUSE)
        self._idle = asyncio.Event()
        if self._busy_count():
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except asyncio.TimeoutError:
                log.warning("%d calls still running at shutdown: abandoned", self._busy_count())
        if self._deadlines is not None:
            self._deadlines.cancel()
        self._closed = True
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.close()
        await asyncio.sleep(0)

    async def retire(self, grace: float, hand_off: HandOff | None = None) -> None:
        """Stop as a replaced worker does: no new connections, calls in flight may finish
        (up to ``grace`` seconds; then as stop()). With ``hand_off`` every connection is
        passed on (Connection.detach) as soon as it holds nothing — at once when idle,
        right after the reply of a call in flight — so APISIX's pooled connections go on
        with the successor and no call is lost. Without, each connection is closed once
        idle with nothing unread (APISIX opens its next connection to another worker)."""
        self._accepting = False
        self._unlisten()
        deadline = self._loop.time() + grace
        self._retire_deadline = min(deadline, self._retire_deadline) if self.hurried else deadline
        if hand_off is not None:
            self._hand_off = hand_off
            while self._accepts:  # connections accepted, not yet made: theirs too
                await asyncio.wait(list(self._accepts))
        else:
            await asyncio.sleep(DRAIN_PAUSE)  # as stop(): frames already sent are calls too
        while (self.connections or self._accepts) and self._loop.time() < self._retire_deadline:
            for conn in list(self.connections):
                if hand_off is not None:
                    self._pass_on(conn)
                elif conn.idle_and_drained():
                    conn.close()
            await asyncio.sleep(RETIRE_POLL)
        self._hand_off = None
        await self.stop(0)

    def shorten_retire(self, grace: float) -> None:
        """Shutdown while retiring: calls in flight get ``grace`` seconds, not more."""
        self.hurried = True
        self._retire_deadline = min(self._retire_deadline, self._loop.time() + grace)

    def _pass_on(self, conn: Connection) -> None:
        hand_off = self._hand_off
        if hand_off is not None and conn in self.connections:
            fd = conn.detach()
            if fd is not None:
                hand_off.send(fd)


async def serve(
    sock: socket.socket,
    confs: ConfBackend,
    services: RunnerServices,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    label: str = "runner",
    accept_pause: float = 0.0,
    limits: Limits = DEFAULT_LIMITS,
    plugins: Mapping[str, Plugin] | None = None,
    retire_grace: Callable[[], float] | None = None,
    observer: CallObserver | None = None,
    lifecycle: PluginLifecycle | None = None,
    hand_off: HandOff | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Serve APISIX connections on the listening ``sock`` until ``stop`` is set, then stop
    accepting and let the calls in flight finish, for SHUTDOWN_GRACE (APISIX kills the
    runner a second after SIGTERM). When ``retire_grace()``, asked then, gives seconds
    (> 0), this process is being replaced instead: Server.retire(), its connections passed
    on through ``hand_off``, which also brings those of the process this one replaces.
    ``plugins`` are started first (``lifecycle``, which stops them at the end, after the
    calls in flight; PluginStartError when one fails) and watched for filters that block
    the event loop (``limits.stall_warning``); ``observer`` (metrics, tracing, debug
    logging) sees every call; ``clock`` is what stalled frames are timed by."""
    server = Server(sock, confs, services, accept_pause, limits, clock)
    if lifecycle is None:
        lifecycle = PluginLifecycle()
    lifecycle.server = server
    if plugins and not await _start_plugins(lifecycle, plugins, stop):
        return
    if observer is not None:
        observer.attach(server)
    watchdog = None
    if limits.stall_warning > 0 and plugins:
        watchdog = StallWatchdog(asyncio.get_running_loop(), limits.stall_warning, plugins)
        watchdog.start()
    await server.start()
    if hand_off is not None:
        hand_off.receive(server)
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
        log.info("%s shutting down: no new connections, finishing calls in flight", label)
        retiring = 0.0 if retire_grace is None else retire_grace()
        if retiring > 0:
            await server.retire(retiring, hand_off)
            if hand_off is not None:
                await hand_off.flush()
            await lifecycle.stop_all(STOP_GRACE if server.hurried else RETIRE_STOP_GRACE)
        else:
            await server.stop(SHUTDOWN_GRACE)
            await lifecycle.stop_all(STOP_GRACE)
        if isinstance(services, PolicyServices):
            await services.aclose()  # the Redis connections of the limits, if any
    finally:
        if watchdog is not None:
            watchdog.stop()
        if observer is not None:
            observer.detach()


async def _start_plugins(
    lifecycle: PluginLifecycle, plugins: Mapping[str, Plugin], stop: asyncio.Event
) -> bool:
    """Start ``plugins`` before serving; False when ``stop`` was set meanwhile (an async
    start still running is cancelled, those started are stopped)."""
    starting = asyncio.ensure_future(lifecycle.start(dict(plugins)))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        await asyncio.wait((starting,))
    if starting.cancelled():
        await lifecycle.stop_all(STOP_GRACE)
        return False
    starting.result()  # PluginStartError
    return True


def parent_gone(parent: int) -> bool:
    """True once the process ``parent`` that started us has exited (we were re-parented)."""
    if os.getppid() == parent:
        return False
    log.warning("the process that started the runner (pid %d) exited: stopping", parent)
    return True


def run_until_complete(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on ``loop`` to the end. A SystemExit or KeyboardInterrupt raised by a
    callback or a task a plugin started escapes the event loop; it stops only that
    callback: it is logged and the loop goes on (only the runner's signal handlers stop
    the runner)."""
    task = loop.create_task(main)
    while True:
        try:
            loop.run_until_complete(task)
            return
        except (SystemExit, KeyboardInterrupt) as exc:
            if task.done():
                raise
            log.error(
                "%s raised outside any call (a plugin's callback or task?): ignored, the "
                "runner keeps serving",
                type(exc).__name__,
                exc_info=exc,
            )


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
