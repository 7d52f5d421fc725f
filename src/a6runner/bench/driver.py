"""The load driver: APISIX's side of many connections on one epoll, kept lean so that it
is not what is measured.

* Every connection sends a PrepareConf with its own key, then keeps one call in flight
  (APISIX never pipelines), each with a fresh id.
* Every reply's frame type and id are checked (and, as a6load does, the action of an
  HTTPReqCall reply and the status and body size of an HTTPRespCall reply); mismatches,
  error frames, closed connections and calls stalled longer than the timeout count as
  errors. CONF_TOKEN_NOT_FOUND makes the connection prepare again, as APISIX does.
* The call frame is built once per connection and only its 4 id bytes are patched; raw
  non-blocking sockets on one level-triggered ``select.epoll``, every read into one
  preallocated buffer. The first reply on a connection is checked by following the few
  FlatBuffers offsets that lead to the checked fields (nothing else is decoded); it then
  becomes the connection's reply template: its bytes up to the last one any check depends
  on, with the id bytes kept equal to the id of the call in flight. A later read of the
  same length that starts with the template is a good reply (one length test and one
  memcmp); anything else goes through the connection's ``codec.FrameSplitter`` and the
  full check.
* Every write goes through the connection's outbox (``out``) and leaves at one place in
  the loop, after the event that queued it; a short write arms EPOLLOUT for the rest.
* ExtraInfo questions are answered with pre-built frames. Every question that arrived in
  one read is answered in one write (one round trip, however many questions a runner
  sends at once), and a read seen once maps straight to its answer bytes.

Latency runs from writing a call frame to reading its final reply (ExtraInfo round trips
included). ``drive(procs=P)`` splits the connections over P forked driver processes and
merges their results.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import mmap
import os
import resource
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from .._kernels import codec
from .scenarios import (
    ACT_ANY,
    BODY_ANY,
    BODY_RESP_SIZE,
    EXTRA_REQ_BODY,
    EXTRA_VAR,
    REQ_ARGS,
    REQ_HEADERS,
    REQ_PATH,
    REQ_SRC_IP,
    RESP_HEADERS,
    RESP_STATUS,
    Scenario,
    resp_body,
)
from .stats import DriverResult, histogram, merge

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16 = struct.Struct("<H").unpack_from
_PACK_U32 = struct.Struct("<I").pack_into
_HEADER = codec.FRAME_HEADER_SIZE

ERROR_KIND = {
    codec.ERR_BAD_REQUEST: "err_bad_request",
    codec.ERR_SERVICE_UNAVAILABLE: "err_service_unavailable",
    codec.ERR_CONF_TOKEN_NOT_FOUND: "err_conf_token_not_found",
}


class Progress(NamedTuple):
    """Where a run is, about once a second: ``measured_s`` is None during the warm-up."""

    measured_s: float | None
    calls: int
    errors: int


OnProgress = Callable[[Progress], None]

ST_PREP, ST_CALL, ST_DEAD = 1, 2, 3
_READ_SIZE = 1 << 16
_COUNTERS = struct.Struct("<QQ")  # calls, errors
_EXTRA_CACHE_MAX = 64


@dataclass
class DriverConfig:
    sock: str
    scenario: Scenario
    conns: int
    plugin: str
    conf: str
    expect: int
    check_id: bool = True
    resp_body_size: int = 4096
    timeout_s: float = 5.0
    key_prefix: str = "a6bench"


class _Conn:
    __slots__ = (
        "call",
        "expect",
        "expect_id_pos",
        "expect_len",
        "fd",
        "flen",
        "id",
        "id_off",
        "idx",
        "out",
        "partial",
        "prep",
        "sock",
        "splitter",
        "state",
        "t0",
        "timed_out",
        "token",
    )

    def __init__(self, idx: int, prep: bytes) -> None:
        self.idx = idx
        self.prep = prep
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = ST_DEAD
        self.splitter = codec.FrameSplitter()  # a new one per socket
        self.partial = False  # the splitter holds the start of a frame
        # what to write at the loop's one write (EPOLLOUT is registered while a short
        # write's rest waits here)
        self.out: bytes | bytearray | memoryview | None = None
        self.call = bytearray()  # the call frame; only its id bytes change
        self.id_off = 0
        self.id = 0
        self.token = 0
        self.t0 = 0
        self.timed_out = False
        # The reply template: the start of a reply this connection already validated in
        # full, cut after the last byte any check reads, with the id bytes set to the id of
        # the call in flight. A read of expect_len bytes that starts with it is a good final
        # reply. flen is expect_len while the template may be used, else -1.
        self.expect = bytearray()
        self.expect_len = -1
        self.expect_id_pos = -1
        self.flen = -1


# -- the few FlatBuffers reads the checks need (positions are in the payload) --


def _table(buf: bytes) -> int:
    """Position of the root table; struct.error or ValueError if out of range."""
    t: int = _U32(buf, 0)[0]
    if t + 4 > len(buf):
        raise ValueError("root table out of range")
    return t


def _vtable(buf: bytes, t: int) -> tuple[int, int, int]:
    """(vtable position, vtable size, table size) of the table at ``t``."""
    vt = t - _I32(buf, t)[0]
    if vt < 0 or vt + 4 > len(buf):
        raise ValueError("vtable out of range")
    vts: int = _U16(buf, vt)[0]
    ts: int = _U16(buf, vt + 2)[0]
    return vt, vts, ts


def _field(buf: bytes, t: int, slot: int, size: int) -> int:
    """Position of field ``slot`` of the table at ``t``, 0 if absent (a6load's fbr_field)."""
    vt, vts, _ = _vtable(buf, t)
    if 4 + 2 * slot + 2 > vts:
        return 0
    off: int = _U16(buf, vt + 4 + 2 * slot)[0]
    if not off or t + off + size > len(buf):
        return 0
    return t + off


def _target(buf: bytes, p: int) -> int:
    """Where the offset field at ``p`` points."""
    q: int = p + _U32(buf, p)[0]
    if q + 4 > len(buf):
        raise ValueError("offset out of range")
    return q


def _var_name(buf: bytes) -> bytes:
    """The name of the var an ExtraInfo.Req asks for (b"" if absent)."""
    p = _field(buf, _table(buf), 1, 4)  # info: the Var table
    if not p:
        return b""
    v = _target(buf, p)
    p = _field(buf, v, 0, 4)  # Var.name
    if not p:
        return b""
    q = _target(buf, p)
    n: int = _U32(buf, q)[0]
    if q + 4 + n > len(buf):
        raise ValueError("string out of range")
    return buf[q + 4 : q + 4 + n]


def _call_frame(cfg: DriverConfig, token: int) -> tuple[bytearray, int]:
    """The call frame for this connection and the offset of its id, found by building it
    with two ids and comparing."""
    sc = cfg.scenario

    def build(call_id: int) -> bytes:
        if sc.call_type == codec.RPC_HTTP_REQ_CALL:
            return codec.build_http_req_call_req(
                call_id, token, 0, REQ_PATH, REQ_ARGS, REQ_HEADERS, REQ_SRC_IP
            )
        return codec.build_http_resp_call_req(call_id, token, RESP_STATUS, RESP_HEADERS)

    a, b = build(0x5A5A5A5A), build(0xA5A5A5A5)
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(a) != len(b) or len(diff) != 4 or diff[3] - diff[0] != 3:
        raise RuntimeError("cannot locate the id in the call frame")
    return bytearray(a), diff[0]


class Driver:
    """One process's share of the connections, on one epoll."""

    def __init__(
        self, cfg: DriverConfig, first_conn: int, nconns: int, id_start: int, id_step: int
    ):
        self.cfg = cfg
        self.res = DriverResult(conns=nconns)
        self.counts = self.res.counts
        self.next_id = id_start
        self.id_step = id_step
        self.ep = select.epoll()
        self.by_fd: list[_Conn | None] = []  # indexed by file descriptor
        self.all: list[_Conn] = []
        self.stopping = False
        self.measuring = False
        self.lat = array.array("q")
        answer = codec.build_extra_info_resp
        self.body_answers = {
            codec.INFO_REQ_BODY: answer(EXTRA_REQ_BODY),
            codec.INFO_RESP_BODY: answer(resp_body(cfg.resp_body_size)),
        }
        self.var_answer = answer(EXTRA_VAR)
        self.var_answers = {name.encode(): answer(v) for name, v in cfg.scenario.vars}
        # ExtraInfo questions carry no id: a read of nothing but questions, seen (and
        # parsed) once, maps to its answers and how many questions it held
        self.extra_cache: dict[bytes, tuple[bytes, int]] = {}
        sc = cfg.scenario
        pid = os.getpid()
        for i in range(first_conn, first_conn + nconns):
            key = f"{cfg.key_prefix}-{pid}-{sc.name}-{i}"
            prep = codec.build_prepare_conf_req([(cfg.plugin, cfg.conf)], key)
            self.all.append(_Conn(i, prep))

    # -- the cold paths: connections, partial frames, first replies, errors --

    def _error(self, kind: str, msg: str | None = None) -> None:
        self.counts[kind] += 1
        if kind != "reconnects":
            self.res.errors += 1
        if msg is not None and len(self.res.messages) < 20:
            self.res.messages.append(msg)

    def _open(self, c: _Conn) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.cfg.sock)
        except OSError as exc:
            s.close()
            c.state = ST_DEAD
            if len(self.res.messages) < 20:
                self.res.messages.append(f"conn {c.idx}: connect {self.cfg.sock}: {exc}")
            return
        s.setblocking(False)
        c.sock = s
        c.fd = s.fileno()
        c.splitter = codec.FrameSplitter()
        c.partial = False
        c.flen = -1
        if c.fd >= len(self.by_fd):
            self.by_fd.extend([None] * (c.fd + 1 - len(self.by_fd)))
        self.by_fd[c.fd] = c
        # the PrepareConf goes out at the loop's write when the new socket is writable
        c.out = c.prep
        self.ep.register(c.fd, select.EPOLLIN | select.EPOLLOUT)
        c.state = ST_PREP

    def _kill(self, c: _Conn, reconnect: bool) -> None:
        if c.sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(c.fd)
            self.by_fd[c.fd] = None
            c.sock.close()
        c.sock = None
        c.fd = -1
        c.state = ST_DEAD
        c.out = None
        c.flen = -1
        if reconnect:
            self._error("reconnects")
            self._open(c)

    def _closed(self, c: _Conn, why: str) -> None:
        if not self.stopping:
            self._error("conn_closed", f"conn {c.idx}: {why} (state {c.state})")
        self._kill(c, not self.stopping)

    @staticmethod
    def _queue(c: _Conn, data: bytes | bytearray) -> None:
        """Queue bytes for the connection's next write (the loop writes after each event)."""
        c.out = data if c.out is None else bytes(c.out) + bytes(data)

    def _send_call(self, c: _Conn, now: int) -> None:
        cid = self.next_id
        nxt = cid + self.id_step
        self.next_id = nxt if nxt <= 0xFFFFFFFF else self.id_step
        c.id = cid
        _PACK_U32(c.call, c.id_off, cid)
        if c.expect_id_pos >= 0:
            _PACK_U32(c.expect, c.expect_id_pos, cid)
        c.t0 = now
        c.timed_out = False
        c.state = ST_CALL
        self._queue(c, c.call)

    def _on_prepare(self, c: _Conn, payload: bytes) -> None:
        try:
            p = _field(payload, _table(payload), 0, 4)
            token = _U32(payload, p)[0] if p else 0
        except (struct.error, ValueError):
            self._error("bad_payload", f"conn {c.idx}: malformed PrepareConf reply")
            token = 0
        c.token = token
        c.call, c.id_off = _call_frame(self.cfg, token)

    def _extra_answer(self, c: _Conn, payload: bytes) -> bytes | None:
        """The answer to one ExtraInfo question; None when the question is malformed or of
        an unknown type (an error, answered as a missing var)."""
        try:
            p = _field(payload, _table(payload), 0, 1)
            info = payload[p] if p else 0
            if info == codec.INFO_VAR:
                return self.var_answers.get(_var_name(payload), self.var_answer)
        except (struct.error, ValueError):
            info = -1
        answer = self.body_answers.get(info)
        if answer is None:
            self._error("bad_payload", f"conn {c.idx}: ExtraInfo request of type {info}")
        return answer

    def _frame(self, c: _Conn, typ: int, payload: bytes, now: int) -> bool:
        """One whole frame, not an ExtraInfo question, that the fast path did not take.
        Returns True when the call is over."""
        if typ == codec.RPC_ERROR:
            try:
                code = codec.decode_err_resp(payload)
            except ValueError:  # DecodeError
                code = -1
            self._error(ERROR_KIND.get(code, "err_other"))
            if c.state == ST_PREP:
                name = ERROR_KIND.get(code, "err_other")[4:].upper()
                self.res.messages.append(f"conn {c.idx}: PrepareConf answered with error {name}")
                self._kill(c, False)
                return False
            if code == codec.ERR_CONF_TOKEN_NOT_FOUND:  # APISIX prepares again and retries
                c.state = ST_PREP
                self._queue(c, c.prep)
                return False
            return True
        if c.state == ST_PREP:
            if typ != codec.RPC_PREPARE_CONF:
                self._error("bad_type")
                self._queue(c, c.prep)
                return False
            self._on_prepare(c, payload)
            return True
        if typ != self.cfg.scenario.call_type:
            self._error("bad_type", f"conn {c.idx}: reply of type {typ}")
            return True
        self._check_reply(c, typ, payload, now)
        return True

    def _check_reply(self, c: _Conn, typ: int, buf: bytes, now: int) -> None:
        """A final reply of the right type: check it as a6load does (id; the action of an
        HTTPReqCall reply; the status and body size of an HTTPRespCall reply). A good reply
        becomes the connection's reply template."""
        cfg = self.cfg
        try:
            t = _table(buf)
            vt, vts, ts = _vtable(buf, t)
            cover = max(vt + vts, t + ts)  # every byte the checks below depend on
            id_pos = _field(buf, t, 0, 4)
            rid = _U32(buf, id_pos)[0] if id_pos else 0
            cover = max(cover, id_pos + 4)
            if cfg.check_id and rid != c.id:
                self._error("bad_id", f"conn {c.idx}: reply id {rid}, expected {c.id}")
                return
            if typ == codec.RPC_HTTP_REQ_CALL and cfg.expect != ACT_ANY:
                p = _field(buf, t, 1, 1)
                cover = max(cover, p + 1)
                if (buf[p] if p else 0) != cfg.expect:
                    self._error("bad_action", f"conn {c.idx}: action {buf[p] if p else 0}")
                    return
            body_min = cfg.scenario.body_min
            if typ == codec.RPC_HTTP_RESP_CALL and cfg.check_id and body_min != BODY_ANY:
                want = cfg.resp_body_size if body_min == BODY_RESP_SIZE else body_min
                p = _field(buf, t, 3, 4)
                blen = 0
                if p:
                    cover = max(cover, p + 4)
                    q = _target(buf, p)
                    blen = _U32(buf, q)[0]
                    if q + 4 + blen > len(buf):
                        raise ValueError("body out of range")
                    cover = max(cover, q + 4)
                p = _field(buf, t, 1, 2)
                cover = max(cover, p + 2)
                status = _U16(buf, p)[0] if p else 0
                if blen < want or status != 200:
                    msg = f"conn {c.idx}: HTTPRespCall reply status {status}, body {blen} bytes"
                    self._error("bad_payload", msg)
                    return
        except (struct.error, ValueError):
            self._error("bad_payload", f"conn {c.idx}: malformed reply")
            return
        if id_pos or not cfg.check_id:  # cover <= len(buf): every read above was in range
            c.expect = bytearray(codec.encode_frame_header(typ, len(buf)) + buf[:cover])
            c.expect_len = _HEADER + len(buf)
            # the id bytes follow the call's id if the runner echoes ids (always, unless
            # --no-id-check against a server that does not, like echo_limit)
            c.expect_id_pos = _HEADER + id_pos if id_pos and rid == c.id else -1
        if self.measuring:
            self.res.calls += 1
            self.lat.append(now - c.t0)

    def _readable(self, c: _Conn, data: bytes, now: int) -> None:
        """A read the fast path did not take: a closed connection, partial or several
        frames, a reply not like the template, ExtraInfo questions not seen before."""
        if not data:
            self._closed(c, "closed by runner")
            return
        splitter = c.splitter
        whole = not c.partial  # the read starts a frame...
        frames = splitter.feed(data)
        c.partial = splitter.pending > 0
        whole = whole and not c.partial  # ... and ends one
        answers: list[bytes] = []  # to this read's ExtraInfo questions, in one write
        call_over = False
        for typ, payload in frames:
            if typ == codec.RPC_EXTRA_INFO:
                answer = self._extra_answer(c, payload)
                whole = whole and answer is not None
                answers.append(answer or self.var_answer)
                continue
            whole = False
            if self._frame(c, typ, payload, now):
                call_over = True
            if c.splitter is not splitter or c.fd < 0:
                return  # the connection was closed (and maybe opened again)
        if answers:
            batch = b"".join(answers)
            if whole and len(self.extra_cache) < _EXTRA_CACHE_MAX:
                self.extra_cache[data] = (batch, len(answers))
            if self.measuring:
                self.res.extra += len(answers)
                self.res.round_trips += 1
            self._queue(c, batch)
        if call_over:
            self._send_call(c, now)
        c.flen = c.expect_len if not c.partial and c.state == ST_CALL else -1

    def _tick(self, now: int) -> int:
        """Once a second: count stalled calls; returns the number of open connections."""
        alive = 0
        timeout_ns = int(self.cfg.timeout_s * 1e9)
        for c in self.all:
            if c.fd >= 0:
                alive += 1
                if c.state == ST_CALL and not c.timed_out and now - c.t0 > timeout_ns:
                    c.timed_out = True
                    msg = f"conn {c.idx}: call id {c.id} stalled > {self.cfg.timeout_s}s"
                    self._error("timeouts", msg)
        return alive

    # -- the measurement --

    def run(
        self,
        t_measure: int,
        t_end: int,
        on_measure_start: Callable[[], None] | None = None,
        on_measure_end: Callable[[], None] | None = None,
        on_progress: OnProgress | None = None,
    ) -> DriverResult:
        """Warm up until ``t_measure`` and measure until ``t_end`` (time.monotonic_ns);
        ``on_progress`` is called about once a second."""
        for conn in self.all:
            self._open(conn)
        res = self.res
        by_fd = self.by_fd
        maxevents = len(self.all) + 1
        poll = self.ep.poll
        readv = os.readv
        rbuf = bytearray(_READ_SIZE)  # every read lands here; only the slow paths copy
        rbufs = [rbuf]
        rmv = memoryview(rbuf)
        clock = time.monotonic_ns
        pack = _PACK_U32
        write = os.write
        modify = self.ep.modify
        readable = self._readable
        lat = self.lat
        lat_append = lat.append
        extra_get = self.extra_cache.get
        epollin, epollout = select.EPOLLIN, select.EPOLLOUT
        next_id = self.next_id
        id_step = self.id_step
        calls = extra = round_trips = 0
        measuring = False
        last_tick = clock()
        next_check = min(t_measure, last_tick + 1_000_000_000)
        m_start = m_end = 0
        cpu0 = cpu1 = 0.0
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while True:
                events = poll(0.05, maxevents)
                now = clock()
                for fd, ev in events:
                    c = by_fd[fd]
                    if c is None:
                        continue
                    out = c.out  # queued earlier: a short write's rest, a new PrepareConf
                    if ev != epollout:  # something to read (or the peer hung up)
                        try:
                            n = readv(fd, rbufs)
                        except BlockingIOError:
                            pass  # nothing after all: on to the write
                        except OSError as exc:
                            self._closed(c, f"read: {exc}")
                            continue
                        else:
                            if n == c.flen and rbuf.startswith(c.expect):
                                # the fast path: a good final reply (the template holds this
                                # call's id); send the next call at once, then count this one
                                cid = next_id
                                next_id += id_step
                                if next_id > 0xFFFFFFFF:
                                    next_id = id_step
                                call = c.call
                                pack(call, c.id_off, cid)
                                out = call if out is None else bytes(out) + call
                                if measuring:
                                    calls += 1
                                    lat_append(now - c.t0)
                                c.t0 = now
                                c.id = cid
                                if c.expect_id_pos >= 0:
                                    pack(c.expect, c.expect_id_pos, cid)
                            else:
                                data = rmv[:n].tobytes()
                                hit = None if c.partial else extra_get(data)
                                if hit is not None:  # ExtraInfo questions seen before
                                    out = hit[0] if out is None else bytes(out) + hit[0]
                                    if measuring:
                                        extra += hit[1]
                                        round_trips += 1
                                else:  # anything else: what it sends, it queues in c.out
                                    self.next_id = next_id
                                    res.calls = calls
                                    readable(c, data, now)
                                    next_id = self.next_id
                                    calls = res.calls
                                    if c.fd != fd:  # closed (and maybe opened again)
                                        continue
                                    out = c.out
                    # the one write: what this event queued, or the rest of a short write
                    if out is None:
                        if ev & epollout:  # the rest went out at the last write
                            modify(fd, epollin)
                        continue
                    try:
                        n = write(fd, out)
                    except BlockingIOError:
                        n = 0
                    except OSError as exc:
                        self._closed(c, f"write: {exc}")
                        continue
                    if n == len(out):
                        if c.out is not None:
                            c.out = None
                    else:  # the socket buffer is full: the rest when it is writable again
                        # (a copy of a bytearray: the call frame is patched for every call)
                        c.out = memoryview(bytes(out) if isinstance(out, bytearray) else out)[n:]
                        if not ev & epollout:
                            modify(fd, epollin | epollout)
                if now < next_check:
                    continue
                if not measuring and now >= t_measure:
                    # a6load resets its statistics at the end of the warm-up
                    if on_measure_start is not None:
                        on_measure_start()
                    measuring = self.measuring = True
                    now = m_start = clock()
                    cpu0 = _cpu_s()
                    calls = extra = round_trips = res.calls = res.extra = res.errors = 0
                    res.round_trips = 0
                    for k in res.counts:
                        res.counts[k] = 0
                    del lat[:]
                if measuring and now >= t_end:
                    m_end = clock()
                    cpu1 = _cpu_s()
                    if on_measure_end is not None:
                        on_measure_end()
                    break
                if now - last_tick >= 1_000_000_000:
                    last_tick = now
                    if not self._tick(now):
                        res.messages.append("all connections dead, giving up")
                        if not measuring:
                            m_start = now
                            cpu0 = _cpu_s()
                            if on_measure_start is not None:
                                on_measure_start()
                        m_end = clock()
                        cpu1 = _cpu_s()
                        if on_measure_end is not None:
                            on_measure_end()
                        break
                    if on_progress is not None:
                        measured = (now - m_start) / 1e9 if measuring else None
                        on_progress(Progress(measured, calls, res.errors))
                next_check = min(t_end if measuring else t_measure, last_tick + 1_000_000_000)
        finally:
            if gc_was_enabled:
                gc.enable()
        res.calls = calls
        res.extra += extra
        res.round_trips += round_trips
        self.stopping = True
        res.elapsed_s = (m_end - m_start) / 1e9
        res.rps = calls / res.elapsed_s if res.elapsed_s > 0 else 0.0
        res.driver_cpu_s = cpu1 - cpu0
        res.hist = histogram(lat)
        res.lat_max_ns = max(lat, default=0)
        res.lat_sum_ns = sum(lat)
        res.inflight_at_stop = sum(1 for c in self.all if c.fd >= 0 and c.state == ST_CALL)
        res.alive_at_stop = sum(1 for c in self.all if c.fd >= 0)
        for c in self.all:
            self._kill(c, False)
        self.ep.close()
        return res


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def drive(
    cfg: DriverConfig,
    warmup_s: float,
    duration_s: float,
    procs: int = 1,
    on_measure_start: Callable[[], None] | None = None,
    on_measure_end: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
) -> DriverResult:
    """Run the load with ``procs`` driver processes; returns the merged result.

    The callbacks run in this process at the start and the end of the measured window
    (with procs > 1, at those moments by the clock while the children drive the load);
    ``on_progress`` about once a second (with procs > 1, the children's counts summed).
    """
    procs = max(1, min(procs, cfg.conns))
    t0 = time.monotonic_ns()
    # with several processes, leave them time to start and connect before the warm-up ends
    t_measure = t0 + int(warmup_s * 1e9) + (0 if procs == 1 else 200_000_000)
    t_end = t_measure + int(duration_s * 1e9)
    if procs == 1:
        return Driver(cfg, 0, cfg.conns, 1, 1).run(
            t_measure, t_end, on_measure_start, on_measure_end, on_progress
        )
    # each child's latest (calls, errors), shared memory the parent sums for on_progress
    counters = mmap.mmap(-1, _COUNTERS.size * procs)
    children: list[tuple[int, int]] = []
    start = 0
    for k in range(procs):
        n = cfg.conns // procs + (1 if k < cfg.conns % procs else 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(r)
                slot = _COUNTERS.size * k

                def publish(p: Progress, slot: int = slot) -> None:
                    _COUNTERS.pack_into(counters, slot, p.calls, p.errors)

                res = Driver(cfg, start, n, k + 1, procs).run(t_measure, t_end, None, None, publish)
                payload = json.dumps(res.to_json()).encode()
            except BaseException as exc:
                payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
                code = 1
            try:
                with os.fdopen(w, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
        start += n

    def report() -> None:
        if on_progress is None:
            return
        now = time.monotonic_ns()
        measured = (now - t_measure) / 1e9 if now >= t_measure else None
        sums = [sum(c) for c in zip(*_COUNTERS.iter_unpack(counters), strict=True)]
        on_progress(Progress(measured, sums[0], sums[1]))

    try:
        for when, cb in ((t_measure, on_measure_start), (t_end, on_measure_end)):
            while (delay := (when - time.monotonic_ns()) / 1e9) > 0:
                time.sleep(min(delay, 1.0))
                if delay > 1.0:
                    report()
            if cb is not None:
                cb()
        results: list[DriverResult] = []
        failures: list[str] = []
        for pid, r in children:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            os.waitpid(pid, 0)
            try:
                d = json.loads(data)
            except ValueError:
                failures.append(f"driver process {pid} died without a result")
                continue
            if "error" in d:
                failures.append(f"driver process {pid}: {d['error']}")
            else:
                results.append(DriverResult.from_json(d))
        children = []
        if failures:
            raise RuntimeError("; ".join(failures))
        return merge(results)
    finally:
        for pid, r in children:  # only after an interruption
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
                os.close(r)
                os.waitpid(pid, 0)
        counters.close()
