"""``a6-runner bench``: an APISIX-like end-to-end load driver.

It speaks APISIX's side of the ext-plugin protocol exactly like the shared C driver
(``/work/shared/tools/a6load.c``, run by ``a6measure``) so the two give comparable figures:

* every connection sends a PrepareConf with its own key, then keeps one call in flight
  (APISIX never pipelines), each with a fresh id;
* the same scenarios: plugin names, confs, 3 args, 13 request headers, 8 response
  headers, and the same canned ExtraInfo answers (var -> ``127.0.0.1``, request body ->
  a small JSON document, response body -> 4 KiB of JSON lines);
* every reply's frame type and id are checked (and, as a6load does, the action of an
  HTTPReqCall reply and the status and body size of an HTTPRespCall reply); mismatches,
  error frames, closed connections and calls stalled longer than ``--timeout`` count as
  errors. CONF_TOKEN_NOT_FOUND makes the connection prepare again, as APISIX does.

Latency runs from writing a call frame to reading its final reply (ExtraInfo round trips
included), in 100 ns buckets up to 200 ms, then 100 us buckets.

Given a runner command (``-- a6-runner run ...``), it starts the runner with
``APISIX_LISTEN_ADDRESS`` / ``APISIX_CONF_EXPIRE_TIME=3600`` as APISIX and ``a6measure`` do,
measures the runner's CPU over its whole process tree and its RSS from ``/proc``, and stops
it with SIGTERM.

The hot loop is kept lean so that the driver is not what is measured: the call frame is
built once per connection and only its 4 id bytes are patched; raw non-blocking sockets
on one level-triggered ``select.epoll``, every read into one preallocated buffer. The
first reply on a connection is checked by following the few FlatBuffers offsets that lead
to the checked fields (nothing else is decoded); it then becomes the connection's reply
template: its bytes up to the last one any check depends on, with the id bytes kept equal
to the id of the call in flight. A later read of the same length that starts with the
template is a good reply (one length test and one memcmp); anything else takes the full
check. ExtraInfo answers are pre-built frames, looked up by the request's bytes.
``--procs P`` splits the connections over P driver processes and merges their results.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._kernels import codec

# -- protocol constants -------------------------------------------------------------------

T_ERR, T_PREP, T_REQ, T_EXTRA, T_RESP = 0, 1, 2, 3, 4
ACT_ANY, ACT_NONE, ACT_STOP, ACT_REWRITE = -1, 0, 1, 2
INFO_VAR, INFO_REQBODY, INFO_RESPBODY = 1, 2, 3
ERR_NAMES = ("BAD_REQUEST", "SERVICE_UNAVAILABLE", "CONF_TOKEN_NOT_FOUND", "other")


@dataclass(frozen=True)
class Scenario:
    name: str
    plugin: str
    conf: str
    call_type: int  # T_REQ or T_RESP
    expect: int  # expected HTTPReqCall action (ACT_ANY: don't check)
    body_min: int  # HTTPRespCall: minimum body length; -1 don't check; -2 >= resp body size
    desc: str


# The same table as a6load.c.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("say", "say", '{"body":"hello"}', T_REQ, ACT_STOP, -1, "Stop with a body"),
        Scenario(
            "rewrite-headers",
            "request-body-rewrite",
            '{"new_body":"{\\"rewritten\\":true,\\"by\\":\\"a6load\\"}"}',
            T_REQ,
            ACT_REWRITE,
            -1,
            "Rewrite action (request-body-rewrite)",
        ),
        Scenario(
            "resp-rewrite",
            "response-rewrite",
            '{"status":200,"headers":{"X-A":"b"},"body":"x"}',
            T_RESP,
            ACT_ANY,
            1,
            "HTTPRespCall: response-rewrite (status/headers/body)",
        ),
        Scenario(
            "resp-filter-body",
            "response-rewrite",
            '{"status":200,"headers":{"X-A":"b"},'
            '"filters":[{"regex":"hello","scope":"global","replace":"HELLO"}]}',
            T_RESP,
            ACT_ANY,
            -2,
            "HTTPRespCall: response-rewrite regex filters (fetches RespBody via ExtraInfo)",
        ),
        Scenario(
            "noop", "a6load-no-such-plugin", "{}", T_REQ, ACT_NONE, -1, "unknown plugin: empty Resp"
        ),
    )
}

REQ_PATH = "/api/v1/users/123"
REQ_SRC_IP = bytes((127, 0, 0, 1))
REQ_ARGS = (("page", "2"), ("limit", "50"), ("sort", "created_at"))
REQ_HEADERS = (
    ("host", "api.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    (
        "cookie",
        "session=3f2a9c1e7b5d4a8f9e0c1b2a3d4e5f60; theme=dark; _ga=GA1.2.123456789.1700000000",
    ),
    ("referer", "https://www.example.com/users?page=1"),
    ("cache-control", "max-age=0"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("x-request-id", "7d3b2c1a-9f8e-4d6c-b5a4-3e2f1a0b9c8d"),
)
RESP_STATUS = 200
RESP_HEADERS = (
    ("content-type", "application/json; charset=utf-8"),
    ("content-length", "4096"),
    ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ("server", "nginx"),
    ("cache-control", "no-cache"),
    ("etag", '"5f3c-1a2b3c4d"'),
    ("vary", "Accept-Encoding"),
    ("x-request-id", "7d3b2c1a-9f8e-4d6c-b5a4-3e2f1a0b9c8d"),
)
EXTRA_VAR = b"127.0.0.1"
EXTRA_REQ_BODY = (
    b'{"user":{"id":123,"name":"alice","email":"alice@example.com"},'
    b'"action":"update","fields":["name","email"]}'
)
_RESP_BODY_CHUNK = b'{"id":123,"msg":"hello world","tags":["a","b","c"]},\n'


def resp_body(size: int) -> bytes:
    """The canned upstream response body: ``size`` bytes of repeated JSON lines."""
    reps = size // len(_RESP_BODY_CHUNK) + 1
    return (_RESP_BODY_CHUNK * reps)[:size]


# -- latency histogram (a6load's buckets) ---------------------------------------------------

HIST_RES_NS = 100
HIST_N = 2_000_000  # 100 ns buckets up to 200 ms
HIST2_RES_NS = 100_000  # then 100 us buckets


def histogram(latencies_ns: Sequence[int]) -> dict[int, int]:
    """Sparse histogram {bucket: count}; bucket < HIST_N is 100 ns wide, above 100 us."""
    hist: dict[int, int] = {}
    get = hist.get
    for ns in latencies_ns:
        b = ns // HIST_RES_NS
        if b >= HIST_N:
            b = HIST_N + ns // HIST2_RES_NS
        hist[b] = get(b, 0) + 1
    return hist


def _bucket_mid_us(b: int) -> float:
    if b < HIST_N:
        return (b * HIST_RES_NS + HIST_RES_NS / 2) / 1000.0
    return ((b - HIST_N) * HIST2_RES_NS + HIST2_RES_NS / 2) / 1000.0


def percentile_us(hist: dict[int, int], p: float) -> float:
    """As a6load: the midpoint of the bucket holding the int(p * total)-th latency."""
    total = sum(hist.values())
    if not total:
        return 0.0
    want = min(int(p * total), total - 1)
    acc = 0
    for b in sorted(hist):
        acc += hist[b]
        if acc > want:
            return _bucket_mid_us(b)
    return 0.0  # not reached


# -- results --------------------------------------------------------------------------------

ERROR_KINDS = (
    "err_bad_request",
    "err_service_unavailable",
    "err_conf_token_not_found",
    "err_other",
    "bad_type",
    "bad_id",
    "bad_action",
    "bad_payload",
    "conn_closed",
    "timeouts",
    "reconnects",  # not an error by itself: the close that caused it is
)


@dataclass
class DriverResult:
    """What one driver process measured (merged over processes by ``merge``)."""

    conns: int = 0
    calls: int = 0
    extra: int = 0
    errors: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    hist: dict[int, int] = field(default_factory=dict)
    lat_max_ns: int = 0
    lat_sum_ns: int = 0
    elapsed_s: float = 0.0  # the measured window
    rps: float = 0.0  # calls / elapsed (summed over processes)
    driver_cpu_s: float = 0.0  # user + system CPU of the driver process(es) in the window
    inflight_at_stop: int = 0
    alive_at_stop: int = 0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["hist"] = [[b, n] for b, n in self.hist.items()]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DriverResult:
        d = dict(d)
        d["hist"] = {int(b): int(n) for b, n in d["hist"]}
        return cls(**d)


def merge(results: Sequence[DriverResult]) -> DriverResult:
    out = DriverResult()
    for r in results:
        out.conns += r.conns
        out.calls += r.calls
        out.extra += r.extra
        out.errors += r.errors
        for k, v in r.counts.items():
            out.counts[k] = out.counts.get(k, 0) + v
        for b, n in r.hist.items():
            out.hist[b] = out.hist.get(b, 0) + n
        out.lat_max_ns = max(out.lat_max_ns, r.lat_max_ns)
        out.lat_sum_ns += r.lat_sum_ns
        out.elapsed_s = max(out.elapsed_s, r.elapsed_s)
        out.rps += r.rps
        out.driver_cpu_s += r.driver_cpu_s
        out.inflight_at_stop += r.inflight_at_stop
        out.alive_at_stop += r.alive_at_stop
        out.messages.extend(r.messages)
    return out


# -- the driver -----------------------------------------------------------------------------

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16 = struct.Struct("<H").unpack_from
_HDR = struct.Struct(">I").unpack_from  # type << 24 | payload length
_PACK_U32 = struct.Struct("<I").pack_into

ST_PREP, ST_CALL, ST_DEAD = 1, 2, 3
_READ_SIZE = 1 << 16
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
        "call_len",
        "expect",
        "expect_id_pos",
        "expect_len",
        "fd",
        "flen",
        "id",
        "id_off",
        "idx",
        "pending",
        "prep",
        "rbuf",
        "sock",
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
        self.rbuf = b""  # the start of a frame not complete yet
        self.pending: memoryview | None = None  # unsent tail of a frame (socket buffer full)
        self.call = bytearray()  # the call frame; only its id bytes change
        self.call_len = 0
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


def _table(buf: bytes) -> int:
    """Position (in the frame: payload starts at 4) of the root table; struct.error or
    ValueError if out of range."""
    t: int = 4 + _U32(buf, 4)[0]
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


def _call_frame(cfg: DriverConfig, token: int) -> tuple[bytearray, int]:
    """The call frame for this connection and the offset of its id, found by building it
    with two ids and comparing."""
    sc = cfg.scenario

    def build(call_id: int) -> bytes:
        if sc.call_type == T_REQ:
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
        self.extra_frames = {
            INFO_VAR: codec.build_extra_info_resp(EXTRA_VAR),
            INFO_REQBODY: codec.build_extra_info_resp(EXTRA_REQ_BODY),
            INFO_RESPBODY: codec.build_extra_info_resp(resp_body(cfg.resp_body_size)),
        }
        # ExtraInfo requests carry no id: a request frame seen (and parsed) once maps to
        # its answer frame
        self.extra_cache: dict[bytes, bytes] = {}
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
        c.rbuf = b""
        c.pending = None
        c.flen = -1
        if c.fd >= len(self.by_fd):
            self.by_fd.extend([None] * (c.fd + 1 - len(self.by_fd)))
        self.by_fd[c.fd] = c
        self.ep.register(c.fd, select.EPOLLIN)
        c.state = ST_PREP
        self._send(c, c.prep)

    def _kill(self, c: _Conn, reconnect: bool) -> None:
        if c.sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(c.fd)
            self.by_fd[c.fd] = None
            c.sock.close()
        c.sock = None
        c.fd = -1
        c.state = ST_DEAD
        c.pending = None
        c.flen = -1
        if reconnect:
            self._error("reconnects")
            self._open(c)

    def _closed(self, c: _Conn, why: str) -> None:
        if not self.stopping:
            self._error("conn_closed", f"conn {c.idx}: {why} (state {c.state})")
        self._kill(c, not self.stopping)

    def _send(self, c: _Conn, frame: bytes | bytearray) -> None:
        """Write a frame; the rare partial write is finished on EPOLLOUT."""
        try:
            n = os.write(c.fd, frame)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._closed(c, f"write: {exc}")
            return
        if n < len(frame):
            c.pending = memoryview(bytes(frame))[n:]
            self.ep.modify(c.fd, select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, c: _Conn) -> None:
        assert c.pending is not None
        try:
            n = os.write(c.fd, c.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._closed(c, f"write: {exc}")
            return
        c.pending = c.pending[n:]
        if not len(c.pending):
            c.pending = None
            self.ep.modify(c.fd, select.EPOLLIN)

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
        self._send(c, c.call)

    def _on_prepare(self, c: _Conn, buf: bytes) -> None:
        try:
            p = _field(buf, _table(buf), 0, 4)
            token = _U32(buf, p)[0] if p else 0
        except (struct.error, ValueError):
            self._error("bad_payload", f"conn {c.idx}: malformed PrepareConf reply")
            token = 0
        c.token = token
        c.call, c.id_off = _call_frame(self.cfg, token)
        c.call_len = len(c.call)

    def _frame(self, c: _Conn, buf: bytes, now: int) -> bool:
        """One whole frame the fast path did not take. Returns True when the call is over."""
        typ = buf[0]
        if typ == T_ERR:
            try:
                p = _field(buf, _table(buf), 0, 1)
                code = min(buf[p] if p else 0, 3)
            except (struct.error, ValueError):
                code = 3
            self._error(("err_" + ERR_NAMES[code]).lower())
            if c.state == ST_PREP:
                msg = f"conn {c.idx}: PrepareConf answered with error {ERR_NAMES[code]}"
                self.res.messages.append(msg)
                self._kill(c, False)
                return False
            if code == 2:  # CONF_TOKEN_NOT_FOUND: APISIX prepares again and retries
                c.state = ST_PREP
                self._send(c, c.prep)
                return False
            return True
        if c.state == ST_PREP:
            if typ != T_PREP:
                self._error("bad_type")
                self._send(c, c.prep)
                return False
            self._on_prepare(c, buf)
            return True
        if typ == T_EXTRA:
            try:
                p = _field(buf, _table(buf), 0, 1)
                info = buf[p] if p else 0
            except (struct.error, ValueError):
                info = 0
            frame = self.extra_frames.get(info)
            if frame is None:
                self._error("bad_payload", f"conn {c.idx}: ExtraInfo request of type {info}")
                frame = self.extra_frames[INFO_VAR]
            elif len(self.extra_cache) < _EXTRA_CACHE_MAX:
                self.extra_cache[bytes(buf)] = frame
            if self.measuring:
                self.res.extra += 1
            self._send(c, frame)
            return False
        if typ != self.cfg.scenario.call_type:
            self._error("bad_type", f"conn {c.idx}: reply of type {typ}")
            return True
        self._check_reply(c, buf, now)
        return True

    def _check_reply(self, c: _Conn, buf: bytes, now: int) -> None:
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
            if buf[0] == T_REQ and cfg.expect != ACT_ANY:
                p = _field(buf, t, 1, 1)
                cover = max(cover, p + 1)
                if (buf[p] if p else 0) != cfg.expect:
                    self._error("bad_action", f"conn {c.idx}: action {buf[p] if p else 0}")
                    return
            body_min = cfg.scenario.body_min
            if buf[0] == T_RESP and cfg.check_id and body_min != -1:
                want = cfg.resp_body_size if body_min == -2 else body_min
                p = _field(buf, t, 3, 4)
                blen = 0
                if p:
                    cover = max(cover, p + 4)
                    q = p + _U32(buf, p)[0]
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
            c.expect = bytearray(buf[:cover])
            c.expect_len = len(buf)
            # the id bytes follow the call's id if the runner echoes ids (always, unless
            # --no-id-check against a server that does not, like echo_limit)
            c.expect_id_pos = id_pos if id_pos and rid == c.id else -1
        if self.measuring:
            self.res.calls += 1
            self.lat.append(now - c.t0)

    def _readable(self, c: _Conn, data: bytes, now: int) -> None:
        """A read the fast path did not take: a closed connection, partial or several
        frames, a reply not like the template, an ExtraInfo request not seen before."""
        if not data:
            self._closed(c, "closed by runner")
            return
        buf = c.rbuf + data if c.rbuf else data
        pos = 0
        call_over = False
        n = len(buf)
        while n - pos >= 4:
            plen = _HDR(buf, pos)[0] & 0xFFFFFF
            if n - pos < 4 + plen:
                break
            frame = buf[pos : pos + 4 + plen] if pos or n != 4 + plen else buf
            pos += 4 + plen
            if self._frame(c, frame, now):
                call_over = True
            if c.fd < 0:
                return
        c.rbuf = buf[pos:] if pos < n else b""
        if call_over:
            self._send_call(c, now)
        c.flen = c.expect_len if not c.rbuf and c.state == ST_CALL else -1

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
    ) -> DriverResult:
        """Warm up until ``t_measure`` and measure until ``t_end`` (time.monotonic_ns)."""
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
        write = os.write
        clock = time.monotonic_ns
        pack = _PACK_U32
        readable = self._readable
        lat = self.lat
        lat_append = lat.append
        extra_get = self.extra_cache.get
        epollout = select.EPOLLOUT
        next_id = self.next_id
        id_step = self.id_step
        calls = extra = 0
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
                    if ev & epollout and c.pending is not None:
                        self._flush(c)
                        if c.fd < 0:
                            continue
                    try:
                        n = readv(fd, rbufs)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._closed(c, f"read: {exc}")
                        continue
                    if n == c.flen and rbuf.startswith(c.expect):
                        # the fast path: a good final reply (the template holds this
                        # call's id); send the next call at once, then count this one
                        cid = next_id
                        next_id += id_step
                        if next_id > 0xFFFFFFFF:
                            next_id = id_step
                        call = c.call
                        pack(call, c.id_off, cid)
                        try:
                            n = write(fd, call)
                        except BlockingIOError:
                            n = 0
                        except OSError as exc:
                            self._closed(c, f"write: {exc}")
                            continue
                        if n != c.call_len:  # the socket buffer is full: rare
                            c.pending = memoryview(bytes(call))[n:]
                            self.ep.modify(fd, select.EPOLLIN | epollout)
                        if measuring:
                            calls += 1
                            lat_append(now - c.t0)
                        c.t0 = now
                        c.id = cid
                        if c.expect_id_pos >= 0:
                            pack(c.expect, c.expect_id_pos, cid)
                        continue
                    data = rmv[:n].tobytes()
                    if not c.rbuf:
                        frame = extra_get(data)
                        if frame is not None:  # an ExtraInfo request seen before
                            try:
                                n = write(fd, frame)
                            except BlockingIOError:
                                n = 0
                            except OSError as exc:
                                self._closed(c, f"write: {exc}")
                                continue
                            if n != len(frame):
                                c.pending = memoryview(frame)[n:]
                                self.ep.modify(fd, select.EPOLLIN | epollout)
                            if measuring:
                                extra += 1
                            continue
                    # anything else
                    self.next_id = next_id
                    res.calls = calls
                    readable(c, data, now)
                    next_id = self.next_id
                    calls = res.calls
                if now < next_check:
                    continue
                if not measuring and now >= t_measure:
                    # a6load resets its statistics at the end of the warm-up
                    if on_measure_start is not None:
                        on_measure_start()
                    measuring = self.measuring = True
                    now = m_start = clock()
                    cpu0 = _cpu_s()
                    calls = extra = res.calls = res.extra = res.errors = 0
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
                next_check = min(t_end if measuring else t_measure, last_tick + 1_000_000_000)
        finally:
            if gc_was_enabled:
                gc.enable()
        res.calls = calls
        res.extra += extra
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
) -> DriverResult:
    """Run the load with ``procs`` driver processes; returns the merged result.

    The callbacks run in this process at the start and the end of the measured window
    (with procs > 1, at those moments by the clock while the children drive the load).
    """
    procs = max(1, min(procs, cfg.conns))
    t0 = time.monotonic_ns()
    # with several processes, leave them time to start and connect before the warm-up ends
    t_measure = t0 + int(warmup_s * 1e9) + (0 if procs == 1 else 200_000_000)
    t_end = t_measure + int(duration_s * 1e9)
    if procs == 1:
        return Driver(cfg, 0, cfg.conns, 1, 1).run(
            t_measure, t_end, on_measure_start, on_measure_end
        )
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
                res = Driver(cfg, start, n, k + 1, procs).run(t_measure, t_end)
                payload = json.dumps(res.to_json()).encode()
            except BaseException as exc:
                payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
                code = 1
            try:
                with os.fdopen(w, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
        start += n
    try:
        for when, cb in ((t_measure, on_measure_start), (t_end, on_measure_end)):
            delay = (when - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
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


# -- the runner under test: start it, watch it in /proc, stop it ------------------------------


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    return out


def tree_cpu_ticks(pid: int) -> int:
    """utime + stime (clock ticks) of the process and all its live descendants, as
    a6measure counts them."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
        total += int(fields[11]) + int(fields[12])  # 14 utime, 15 stime
    return total


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(largest VmRSS, largest VmHWM) in KiB over the process tree."""
    rss = hwm = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = max(rss, int(line.split()[1]))
                    elif line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            continue
    return rss, hwm


class RunnerWatch:
    """CPU of a process tree over the measured window (the drive() callbacks)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0 = self.t1 = 0
        self.w0 = self.w1 = 0.0
        self.rss_kb = self.hwm_kb = 0

    def start(self) -> None:
        self.t0 = tree_cpu_ticks(self.pid)
        self.w0 = time.monotonic()

    def end(self) -> None:
        self.t1 = tree_cpu_ticks(self.pid)
        self.w1 = time.monotonic()
        self.rss_kb, self.hwm_kb = tree_rss_kb(self.pid)

    def cores(self) -> float:
        wall = self.w1 - self.w0
        return (self.t1 - self.t0) / self.hz / wall if wall > 0 else 0.0


class StartedRunner:
    """A runner command started as APISIX starts it."""

    def __init__(self, cmd: Sequence[str], sock: str, conf_expire_time: str = "3600") -> None:
        self.sock = sock
        self.log_path = sock + ".log"
        env = dict(os.environ)
        env["APISIX_LISTEN_ADDRESS"] = f"unix:{sock}"
        env["APISIX_CONF_EXPIRE_TIME"] = conf_expire_time
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _is_socket(self.sock):
                time.sleep(0.3)  # as a6measure: let every worker start listening
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"runner did not create its socket; its output:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        for p in (self.sock, self.log_path):
            with contextlib.suppress(OSError):
                os.unlink(p)


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


# -- command line -------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sock", metavar="PATH", help="an already running runner's socket")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="say")
    p.add_argument("--conns", type=int, default=16, help="connections (default 16)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (default 2)")
    p.add_argument("--procs", type=int, default=1, help="driver processes (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--plugin", help="override the scenario's plugin name")
    p.add_argument("--conf", help="override the scenario's plugin conf (JSON)")
    p.add_argument(
        "--expect", choices=("stop", "rewrite", "none", "any"), help="override the expected action"
    )
    p.add_argument(
        "--no-id-check",
        action="store_true",
        help="don't check reply ids / response bodies (needed against echo_limit)",
    )
    p.add_argument("--resp-body-size", type=int, default=4096, help="ExtraInfo RespBody size")
    p.add_argument("--timeout", type=float, default=5.0, help="a slower call is a timeout error")
    p.add_argument("--runner-pid", type=int, help="with --sock: measure this process tree's CPU")
    p.add_argument("--label", default=None, help="runner label in the RESULT line")
    p.add_argument(
        "runner",
        nargs="*",
        metavar="-- RUNNER COMMAND",
        help="start this command as the runner (APISIX's environment), measure it, stop it",
    )


def run(args: argparse.Namespace) -> int:
    """The ``a6-runner bench`` subcommand."""
    if bool(args.sock) == bool(args.runner):
        print("a6-runner bench: give either --sock PATH or -- RUNNER COMMAND...", file=sys.stderr)
        return 2
    if args.conns < 1 or args.procs < 1 or args.duration <= 0 or args.warmup < 0:
        print(
            "a6-runner bench: --conns/--procs >= 1, --duration > 0, --warmup >= 0", file=sys.stderr
        )
        return 2
    sc = SCENARIOS[args.scenario]
    expect = {"stop": ACT_STOP, "rewrite": ACT_REWRITE, "none": ACT_NONE, "any": ACT_ANY}.get(
        args.expect or "", sc.expect
    )
    runner: StartedRunner | None = None
    tmpdir: str | None = None
    watch: RunnerWatch | None = None
    sock = args.sock
    label = args.label
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        if args.runner:
            tmpdir = tempfile.mkdtemp(prefix="a6bench-")
            sock = os.path.join(tmpdir, "runner.sock")
            runner = StartedRunner(args.runner, sock)
            runner.wait_ready()
            watch = RunnerWatch(runner.proc.pid)
            label = label or "runner"
        elif args.runner_pid:
            watch = RunnerWatch(args.runner_pid)
        cfg = DriverConfig(
            sock=sock,
            scenario=sc,
            conns=args.conns,
            plugin=args.plugin or sc.plugin,
            conf=args.conf or sc.conf,
            expect=expect,
            check_id=not args.no_id_check,
            resp_body_size=args.resp_body_size,
            timeout_s=args.timeout,
        )
        res = drive(
            cfg,
            args.warmup,
            args.duration,
            args.procs,
            watch.start if watch else None,
            watch.end if watch else None,
        )
        alive = runner.alive() if runner else None
    except (OSError, RuntimeError) as exc:
        print(f"a6-runner bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            runner.stop()
            if not (runner.alive() or runner.proc.returncode == 0):
                sys.stderr.write(runner.log()[-4000:])
            runner.cleanup()
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(tmpdir)
    report = summarize(res, cfg, args, label or "-", watch, alive, runner)
    if args.json:
        print(json.dumps(report, indent=None))
    else:
        print_report(report, res)
    return 1 if res.errors or alive is False else 0


def summarize(
    res: DriverResult,
    cfg: DriverConfig,
    args: argparse.Namespace,
    label: str,
    watch: RunnerWatch | None,
    alive: bool | None,
    runner: StartedRunner | None,
) -> dict[str, Any]:
    el = res.elapsed_s
    rep: dict[str, Any] = {
        "runner": label,
        "scenario": cfg.scenario.name,
        "plugin": cfg.plugin,
        "conns": cfg.conns,
        "procs": max(1, min(args.procs, cfg.conns)),
        "warmup_s": args.warmup,
        "measured_s": round(el, 3),
        "calls": res.calls,
        "rps": round(res.rps, 1),
        "p50_us": percentile_us(res.hist, 0.50),
        "p90_us": percentile_us(res.hist, 0.90),
        "p99_us": percentile_us(res.hist, 0.99),
        "p999_us": percentile_us(res.hist, 0.999),
        "max_us": res.lat_max_ns / 1000.0,
        "avg_us": round(res.lat_sum_ns / 1000.0 / res.calls, 1) if res.calls else 0.0,
        "errors": res.errors,
        "error_counts": res.counts,
        "extra_per_call": round(res.extra / res.calls, 2) if res.calls else 0.0,
        "driver_cpu": round(res.driver_cpu_s / el, 2) if el > 0 else 0.0,
        "driver_cpu_us_per_call": (
            round(res.driver_cpu_s * 1e6 / res.calls, 1) if res.calls else None
        ),
        "inflight_at_stop": res.inflight_at_stop,
    }
    if watch is not None:
        cores = watch.cores()
        rep["runner_cpu"] = round(cores, 3)
        rep["runner_cpu_us_per_call"] = round(cores * 1e6 / res.rps, 1) if res.rps > 0 else None
        rep["runner_rss_kb"] = watch.rss_kb
        rep["runner_hwm_kb"] = watch.hwm_kb
    if alive is not None:
        rep["runner_alive"] = alive
    if runner is not None:
        rep["runner_exit"] = runner.proc.returncode
    if res.messages:
        rep["messages"] = res.messages
    return rep


def print_report(rep: dict[str, Any], res: DriverResult) -> None:
    for m in rep.get("messages", []):
        print(m, file=sys.stderr)
    print(
        f"a6-runner bench: scenario={rep['scenario']} plugin={rep['plugin']} "
        f"conns={rep['conns']} procs={rep['procs']} warmup={rep['warmup_s']}s "
        f"measured={rep['measured_s']:.2f}s"
    )
    print(
        f"  calls      {rep['calls']}  ({rep['rps']:.0f} calls/s)  "
        f"extra_info={res.extra} ({rep['extra_per_call']:.2f}/call)"
    )
    print(
        f"  latency us p50={rep['p50_us']:.1f} p90={rep['p90_us']:.1f} p99={rep['p99_us']:.1f} "
        f"p99.9={rep['p999_us']:.1f} max={rep['max_us']:.1f} avg={rep['avg_us']:.1f}"
    )
    detail = " ".join(f"{k}={v}" for k, v in rep["error_counts"].items())
    print(f"  errors     {rep['errors']}  ({detail})")
    print(
        f"  driver cpu {rep['driver_cpu']:.2f} cores ({rep['driver_cpu_us_per_call']} us/call); "
        f"calls in flight at stop: {rep['inflight_at_stop']}"
    )
    extra = ""
    if "runner_cpu" in rep:
        print(
            f"  runner cpu {rep['runner_cpu']:.2f} cores, "
            f"{rep['runner_cpu_us_per_call']} us/call; "
            f"rss {rep['runner_rss_kb']} KiB (peak {rep['runner_hwm_kb']} KiB)"
        )
        extra = (
            f" runner_cpu_us_per_call={rep['runner_cpu_us_per_call']}"
            f" runner_rss_kb={rep['runner_rss_kb']}"
        )
    if "runner_alive" in rep:
        extra += f" runner_alive={'yes' if rep['runner_alive'] else 'DIED'}"
    print(
        f"RESULT runner={rep['runner']} scenario={rep['scenario']} conns={rep['conns']} "
        f"calls={rep['calls']} rps={rep['rps']:.0f} p50_us={rep['p50_us']:.1f} "
        f"p90_us={rep['p90_us']:.1f} p99_us={rep['p99_us']:.1f} max_us={rep['max_us']:.1f} "
        f"errors={rep['errors']} extra_per_call={rep['extra_per_call']:.2f} "
        f"driver_cpu={rep['driver_cpu']:.2f}{extra}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="a6-runner bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
