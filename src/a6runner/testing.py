"""Test plugins the way APISIX uses them: over the real unix socket.

``run_runner()`` starts a runner in this process (in a background thread) with the plugins
you give it; ``Client`` speaks APISIX's side of the protocol: PrepareConf, then request /
response calls with realistic defaults, answering the runner's ExtraInfo questions from the
vars and bodies you pass, and returning each reply as a plain ``Reply`` object.

Example (pytest):

    from a6runner import Plugin
    from a6runner.testing import run_runner

    class Hello(Plugin):
        name = "hello"
        def request_filter(self, conf, req):
            req.respond(200, f"hello {req.args.get('who', 'world')}")

    def test_hello():
        with run_runner(plugins=[Hello]) as runner, runner.client() as apisix:
            token = apisix.prepare_conf([("hello", {})])
            reply = apisix.http_req_call(token, args=[("who", "you")])
            assert reply.action == "stop" and reply.body == b"hello you"

Replies are decoded with the FlatBuffers runtime and the generated code of our schema, not
with a6runner's own codec, so a test also checks the wire format independently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._kernels import codec
from ._plugin import METHODS, Plugin

__all__ = [
    "AsyncClient",
    "CallData",
    "Client",
    "ClientProtocol",
    "Reply",
    "RunnerHandle",
    "RunnerProcess",
    "decode_reply",
    "run_runner",
    "spawn_runner",
]

METHOD_NUMBERS = {name: i for i, name in enumerate(METHODS)}
ERROR_NAMES = {
    codec.ERR_BAD_REQUEST: "BAD_REQUEST",
    codec.ERR_SERVICE_UNAVAILABLE: "SERVICE_UNAVAILABLE",
    codec.ERR_CONF_TOKEN_NOT_FOUND: "CONF_TOKEN_NOT_FOUND",
}
INFO_NAMES = {
    codec.INFO_VAR: "var",
    codec.INFO_REQ_BODY: "req_body",
    codec.INFO_RESP_BODY: "resp_body",
}

Entries = list[tuple[str, "str | None"]]
"""Header or arg entries as the runner sent them: (name, value), value None to delete."""
EntriesIn = Iterable[tuple[str, "str | bytes | None"]] | Mapping[str, "str | bytes | None"]
"""Header or arg entries to send: (name, value) pairs or a mapping; None: no value."""


@dataclass
class Reply:
    """A decoded reply from the runner.

    ``kind`` is the frame: ``"prepare_conf"``, ``"http_req_call"``, ``"http_resp_call"`` or
    ``"error"`` (then ``error`` is BAD_REQUEST / SERVICE_UNAVAILABLE / CONF_TOKEN_NOT_FOUND).
    For an HTTPReqCall, ``action`` is ``"none"``, ``"stop"`` (``status``, ``headers``,
    ``body``) or ``"rewrite"`` (``path``, ``headers``, ``args``, ``resp_headers``, ``body``).
    For an HTTPRespCall, ``status`` (0 = unchanged), ``headers`` and ``body`` (None = unchanged).
    ``asked`` lists the ExtraInfo questions the runner asked during the call, in order, as
    ``("var", name)``, ``("req_body", None)`` or ``("resp_body", None)``; ``round_trips``
    is how many times the client answered: every question that arrived in one read is
    answered at once, in order, in one write (a runner asking one question at a time costs
    one round trip per question; one that sends them all at once costs 1).
    """

    kind: str
    id: int = 0
    error: str | None = None
    conf_token: int = 0
    action: str | None = None
    status: int = 0
    path: str | None = None
    headers: Entries = field(default_factory=list)
    args: Entries = field(default_factory=list)
    resp_headers: Entries = field(default_factory=list)
    body: bytes | None = None
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    round_trips: int = 0

    def header(self, name: str) -> str | None:
        """Value of the last entry named ``name`` (case-insensitive) in ``headers``."""
        found = None
        for n, v in self.headers:
            if n.lower() == name.lower():
                found = v
        return found

    def header_values(self, name: str) -> list[str | None]:
        """Every value of the entries named ``name`` (case-insensitive) in ``headers``, in
        order (None for a header the reply deletes)."""
        return [v for n, v in self.headers if n.lower() == name.lower()]


# -- decoding replies with the generated code (independent of a6runner's codec) -----------


def _str(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _vector_bytes(obj: Any, field_id: int) -> bytes | None:
    tab = obj._tab
    o = tab.Offset(4 + 2 * field_id)
    if o == 0:
        return None
    start = tab.Vector(o)
    return bytes(tab.Bytes[start : start + tab.VectorLen(o)])


def _entries(obj: Any, getter: str) -> Entries:
    n = getattr(obj, getter + "Length")()
    out: Entries = []
    for i in range(n):
        e = getattr(obj, getter)(i)
        out.append((_str(e.Name()) or "", _str(e.Value())))
    return out


def decode_reply(frame_type: int, payload: bytes) -> Reply:
    """Decode a runner reply frame (types 0, 1, 2 and 4) with the generated code."""
    from ._fbs.ErrResp import ErrResp
    from ._fbs.HTTPReqCallResp import HTTPReqCallResp
    from ._fbs.HTTPRespCallResp import HTTPRespCallResp
    from ._fbs.PrepareConfResp import PrepareConfResp
    from ._fbs.Rewrite import Rewrite
    from ._fbs.Stop import Stop

    buf = bytearray(payload)
    if frame_type == codec.RPC_ERROR:
        code = ErrResp.GetRootAs(buf, 0).Code()
        return Reply("error", error=ERROR_NAMES.get(code, f"UNKNOWN({code})"))
    if frame_type == codec.RPC_PREPARE_CONF:
        return Reply("prepare_conf", conf_token=PrepareConfResp.GetRootAs(buf, 0).ConfToken())
    if frame_type == codec.RPC_HTTP_REQ_CALL:
        resp = HTTPReqCallResp.GetRootAs(buf, 0)
        reply = Reply("http_req_call", id=resp.Id())
        action_type = resp.ActionType()
        table = resp.Action()
        if action_type == codec.ACTION_STOP and table is not None:
            stop = Stop()
            stop.Init(table.Bytes, table.Pos)
            reply.action = "stop"
            reply.status = stop.Status()
            reply.headers = _entries(stop, "Headers")
            reply.body = _vector_bytes(stop, 2)
        elif action_type == codec.ACTION_REWRITE and table is not None:
            rw = Rewrite()
            rw.Init(table.Bytes, table.Pos)
            reply.action = "rewrite"
            reply.path = _str(rw.Path())
            reply.headers = _entries(rw, "Headers")
            reply.args = _entries(rw, "Args")
            reply.resp_headers = _entries(rw, "RespHeaders")
            reply.body = _vector_bytes(rw, 4)
        else:
            reply.action = "none"
        return reply
    if frame_type == codec.RPC_HTTP_RESP_CALL:
        resp = HTTPRespCallResp.GetRootAs(buf, 0)
        return Reply(
            "http_resp_call",
            id=resp.Id(),
            status=resp.Status(),
            headers=_entries(resp, "Headers"),
            body=_vector_bytes(resp, 3),
        )
    raise ValueError(f"frame type {frame_type} is not a reply")


def decode_extra_info_req(payload: bytes) -> tuple[str, str | None]:
    """An ExtraInfo question from the runner as ``("var", name)``, ``("req_body", None)``
    or ``("resp_body", None)``."""
    from ._fbs.ExtraInfoReq import ExtraInfoReq
    from ._fbs.Var import Var

    req = ExtraInfoReq.GetRootAs(bytearray(payload), 0)
    kind = INFO_NAMES.get(req.InfoType(), f"unknown({req.InfoType()})")
    name = None
    if kind == "var":
        table = req.Info()
        if table is not None:
            var = Var()
            var.Init(table.Bytes, table.Pos)
            name = _str(var.Name())
    return kind, name


# -- APISIX's side of a connection, without I/O --------------------------------------------


def _entries_in(entries: EntriesIn) -> list[tuple[str, str | bytes | None]]:
    return list(entries.items()) if isinstance(entries, Mapping) else list(entries)


def _conf_value(value: Any) -> str | bytes:
    return value if isinstance(value, str | bytes) else json.dumps(value)


def _src_ip(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return ipaddress.ip_address(value).packed


DEFAULT_HEADERS = (("host", "localhost"), ("user-agent", "a6runner-testing/1"), ("accept", "*/*"))
"""The request headers of a call made with ``headers=None``."""
READ_SIZE = 1 << 20  # what one read asks the socket for


@dataclass
class CallData:
    """What APISIX knows during one call, used to answer ExtraInfo questions."""

    vars: Mapping[str, str | bytes | None]
    req_body: bytes | None
    resp_body: bytes | None

    def answer(self, kind: str, name: str | None) -> bytes:
        """The ExtraInfo.Resp payload answering a question (``kind`` ``"var"`` with the
        var's ``name``, ``"req_body"`` or ``"resp_body"``); a missing value has no result."""
        if kind == "var":
            value = self.vars.get(name or "")
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            return codec.build_extra_info_resp(value)
        if kind == "req_body":
            return codec.build_extra_info_resp(self.req_body)
        if kind == "resp_body":
            return codec.build_extra_info_resp(self.resp_body)
        return codec.build_extra_info_resp(None)


NO_DATA = CallData({}, None, None)


def _as_bytes(body: bytes | str | None) -> bytes | None:
    return body.encode() if isinstance(body, str) else body


class ClientProtocol:
    """APISIX's side of one connection, without I/O: ``Client``, ``AsyncClient`` and
    ``a6-runner call`` drive it with their own sockets.

    Build a call frame (ids are numbered from 0 like an APISIX worker's), ``start_call``
    it, write what it returns, then ``receive`` every read from the socket: each returns
    the bytes to write back (the answers to the ExtraInfo questions that read completed,
    in order, all in one write) and, once the final reply arrived, the decoded ``Reply``.
    Frames that arrive after the reply stay queued for the next call or ``next_frame``.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(0)
        self._splitter = codec.FrameSplitter()
        self._frames: collections.deque[tuple[int, bytes]] = collections.deque()
        self._data = NO_DATA
        self._asked: list[tuple[str, str | None]] = []
        self._round_trips = 0

    # -- call frames --

    def next_id(self, id: int | None = None) -> int:
        """``id``, or the next call id of this connection when None."""
        return next(self._ids) if id is None else id

    @staticmethod
    def prepare_conf_frame(conf: Sequence[tuple[str, Any]], key: str | None) -> bytes:
        """A PrepareConf frame: ``conf`` is ``[(plugin_name, conf)]``, a conf given as a
        dict or list is JSON-encoded, a str or bytes sent as it is."""
        return codec.build_prepare_conf_req([(n, _conf_value(v)) for n, v in conf], key)

    @staticmethod
    def http_req_call_frame(
        id: int,
        token: int,
        method: str,
        path: str,
        args: EntriesIn,
        headers: EntriesIn | None,
        src_ip: str | bytes | None,
    ) -> bytes:
        """An HTTPReqCall frame; ``headers`` None sends ``DEFAULT_HEADERS``, ``src_ip`` is
        an address (``"10.0.0.1"``, ``"::1"``) or its packed bytes."""
        return codec.build_http_req_call_req(
            id,
            token,
            METHOD_NUMBERS[method.upper()],
            path,
            _entries_in(args),
            _entries_in(DEFAULT_HEADERS if headers is None else headers),
            _src_ip(src_ip),
        )

    @staticmethod
    def http_resp_call_frame(id: int, token: int, status: int, headers: EntriesIn | None) -> bytes:
        """An HTTPRespCall frame; ``headers`` None sends ``content-type: text/plain``."""
        hdrs = (("content-type", "text/plain"),) if headers is None else headers
        return codec.build_http_resp_call_req(id, token, status, _entries_in(hdrs))

    # -- one call --

    def start_call(self, frame: bytes, data: CallData | None = None) -> bytes:
        """Begin a call: returns the bytes to write (the frame). ExtraInfo questions are
        answered from ``data`` (None: every answer is missing)."""
        self._data = data or NO_DATA
        self._asked = []
        self._round_trips = 0
        return frame

    def receive(self, data: bytes) -> tuple[bytes, Reply | None]:
        """Feed one read (``b""`` just looks at frames already queued). Returns (the bytes
        to write now, possibly empty; the reply when the call is over, else None)."""
        self.feed(data)
        answers: list[bytes] = []
        reply = None
        while self._frames:
            frame_type, payload = self._frames.popleft()
            if frame_type == codec.RPC_EXTRA_INFO:
                question = decode_extra_info_req(payload)
                self._asked.append(question)
                answers.append(self._data.answer(*question))
                continue
            reply = decode_reply(frame_type, payload)
            reply.asked = self._asked
            break
        if answers:
            self._round_trips += 1
        if reply is not None:
            reply.round_trips = self._round_trips
        return b"".join(answers), reply

    # -- raw frames --

    def feed(self, data: bytes) -> None:
        """Queue the frames ``data`` completes."""
        if data:
            self._frames.extend(self._splitter.feed(data))

    def next_frame(self) -> tuple[int, bytes] | None:
        """The oldest queued frame as (type, payload), or None."""
        return self._frames.popleft() if self._frames else None


# -- blocking client ------------------------------------------------------------------------


class Client:
    """APISIX's side of one connection, blocking. Use as a context manager."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        """The runner's socket; every read and write waits at most ``timeout`` seconds."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except BaseException:
            self._sock.close()
            raise
        self._protocol = ClientProtocol()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (as APISIX does when it drops a pooled one)."""
        self._sock.close()

    def _read(self) -> bytes:
        data = self._sock.recv(READ_SIZE)
        if not data:
            raise ConnectionError("runner closed the connection")
        return data

    # raw frames, for protocol tests
    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (a hand-made or broken frame, for protocol tests)."""
        self._sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the runner as (type, payload), waiting for it."""
        while (frame := self._protocol.next_frame()) is None:
            self._protocol.feed(self._read())
        return frame

    def exchange(self, frame: bytes, data: CallData | None = None) -> Reply:
        """Send a call frame; answer ExtraInfo questions from ``data``; return the reply."""
        protocol = self._protocol
        self.send_raw(protocol.start_call(frame, data))
        answers, reply = protocol.receive(b"")
        while True:
            if answers:
                self.send_raw(answers)
            if reply is not None:
                return reply
            answers, reply = protocol.receive(self._read())

    def prepare_conf(self, conf: Sequence[tuple[str, Any]], key: str | None = None) -> int:
        """PrepareConf with ``[(plugin_name, conf)]`` (a dict/list conf is JSON-encoded);
        returns the token. Raises RuntimeError if the runner answered an error."""
        reply = self.exchange(self._protocol.prepare_conf_frame(conf, key))
        if reply.kind != "prepare_conf":
            raise RuntimeError(f"PrepareConf failed: {reply.error}")
        return reply.conf_token

    def http_req_call(
        self,
        conf_token: int,
        *,
        method: str = "GET",
        path: str = "/",
        args: EntriesIn = (),
        headers: EntriesIn | None = None,
        src_ip: str | bytes | None = "127.0.0.1",
        vars: Mapping[str, str | bytes | None] | None = None,
        body: bytes | str | None = None,
        id: int | None = None,
    ) -> Reply:
        """One HTTPReqCall. ``vars`` and ``body`` answer the runner's ExtraInfo questions
        (a var not in ``vars`` is answered as missing)."""
        p = self._protocol
        frame = p.http_req_call_frame(
            p.next_id(id), conf_token, method, path, args, headers, src_ip
        )
        return self.exchange(frame, CallData(vars or {}, _as_bytes(body), None))

    def http_resp_call(
        self,
        conf_token: int,
        *,
        status: int = 200,
        headers: EntriesIn | None = None,
        body: bytes | str | None = None,
        vars: Mapping[str, str | bytes | None] | None = None,
        id: int | None = None,
    ) -> Reply:
        """One HTTPRespCall; ``body`` is the upstream body the runner may ask for."""
        p = self._protocol
        frame = p.http_resp_call_frame(p.next_id(id), conf_token, status, headers)
        return self.exchange(frame, CallData(vars or {}, None, _as_bytes(body)))


# -- asyncio client ---------------------------------------------------------------------------


class AsyncClient:
    """APISIX's side of one connection, for asyncio tests (many connections at once)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._protocol = ClientProtocol()

    @classmethod
    async def connect(cls, socket_path: str) -> AsyncClient:
        """Connect to the runner at ``socket_path``."""
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=1 << 25)
        return cls(reader, writer)

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> bytes:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("runner closed the connection")
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the runner as (type, payload)."""
        while (frame := self._protocol.next_frame()) is None:
            self._protocol.feed(await self._read())
        return frame

    async def exchange(self, frame: bytes, data: CallData | None = None) -> Reply:
        """As ``Client.exchange``."""
        protocol = self._protocol
        self._writer.write(protocol.start_call(frame, data))
        await self._writer.drain()
        answers, reply = protocol.receive(b"")
        while True:
            if answers:
                self._writer.write(answers)
                await self._writer.drain()
            if reply is not None:
                return reply
            answers, reply = protocol.receive(await self._read())

    async def prepare_conf(self, conf: Sequence[tuple[str, Any]], key: str | None = None) -> int:
        """As ``Client.prepare_conf``."""
        reply = await self.exchange(self._protocol.prepare_conf_frame(conf, key))
        if reply.kind != "prepare_conf":
            raise RuntimeError(f"PrepareConf failed: {reply.error}")
        return reply.conf_token

    async def http_req_call(
        self,
        conf_token: int,
        *,
        method: str = "GET",
        path: str = "/",
        args: EntriesIn = (),
        headers: EntriesIn | None = None,
        src_ip: str | bytes | None = "127.0.0.1",
        vars: Mapping[str, str | bytes | None] | None = None,
        body: bytes | str | None = None,
        id: int | None = None,
    ) -> Reply:
        """As ``Client.http_req_call``."""
        p = self._protocol
        frame = p.http_req_call_frame(
            p.next_id(id), conf_token, method, path, args, headers, src_ip
        )
        return await self.exchange(frame, CallData(vars or {}, _as_bytes(body), None))

    async def http_resp_call(
        self,
        conf_token: int,
        *,
        status: int = 200,
        headers: EntriesIn | None = None,
        body: bytes | str | None = None,
        vars: Mapping[str, str | bytes | None] | None = None,
        id: int | None = None,
    ) -> Reply:
        """As ``Client.http_resp_call``."""
        p = self._protocol
        frame = p.http_resp_call_frame(p.next_id(id), conf_token, status, headers)
        return await self.exchange(frame, CallData(vars or {}, None, _as_bytes(body)))


# -- runners to test against ------------------------------------------------------------------


def _remove_socket(path: str) -> None:
    """Remove ``path`` if it is a socket (what a killed runner leaves behind); anything else
    at the path is left alone."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


@contextlib.contextmanager
def _socket_path(socket_path: str | None) -> Iterator[str]:
    """``socket_path``, or one in a new temporary folder removed afterwards."""
    if socket_path is not None:
        yield socket_path
        return
    folder = tempfile.mkdtemp(prefix="a6runner-")
    try:
        yield os.path.join(folder, "runner.sock")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class RunnerHandle:
    """A runner serving in a background thread of this process; ``plugins`` are the ones it
    serves, by name (empty when unknown, as for a runner in another process)."""

    def __init__(self, socket_path: str, plugins: Mapping[str, Plugin] | None = None) -> None:
        self.socket_path = socket_path
        """The socket the runner listens on."""
        self.listen_address = f"unix:{socket_path}"
        """The same as ``APISIX_LISTEN_ADDRESS`` spells it: ``unix:`` + ``socket_path``."""
        self.plugins: Mapping[str, Plugin] = plugins or {}
        """The plugin instances the runner serves, by name."""

    def client(self, timeout: float = 30.0) -> Client:
        """A new blocking connection to the runner (a context manager)."""
        return Client(self.socket_path, timeout)

    async def async_client(self) -> AsyncClient:
        """A new asyncio connection to the runner."""
        return await AsyncClient.connect(self.socket_path)


@contextlib.contextmanager
def run_runner(
    plugins: Iterable[type[Plugin]] = (),
    *,
    bundled: bool = False,
    conf_expire_time: float = 3600.0,
    socket_path: str | None = None,
    paths: Sequence[str] = (),
    entry_points: bool = False,
    clock: Callable[[], float] = time.monotonic,
    unknown_plugins: str = "skip",
) -> Iterator[RunnerHandle]:
    """Run a runner in a background thread for the duration of the ``with`` block.

    ``plugins``: the plugin classes to serve; ``bundled=True`` adds the bundled plugins;
    ``paths`` and ``entry_points=True`` add plugins as ``a6-runner run --plugins`` and the
    ``a6runner.plugins`` entry points do (a module that fails to load raises
    ``PluginLoadError``). The plugins' ``start`` runs before the block begins (one that
    raises makes this raise ``PluginStartError``), their ``stop`` when it ends. Confs are
    kept ``conf_expire_time`` x 1.2 seconds, as in
    production. ``clock`` is the monotonic clock that conf expiry, the limit buckets and
    counters, the frame timeout and the Redis failure log read: pass a fake one to let a
    TTL pass without sleeping. ``unknown_plugins="refuse"`` refuses the calls of a conf
    naming an unregistered plugin (``--unknown-plugins``).
    """
    from ._registry import build_registry
    from ._runner import serve_single
    from ._server import new_event_loop
    from ._settings import Settings

    registry = build_registry(plugins, paths, bundled=bundled, entry_points=entry_points)
    plugin_map = {n: r.plugin for n, r in registry.items()}
    with _socket_path(socket_path) as path:
        settings = Settings(path, conf_expire_time)
        settings.unknown_plugins = unknown_plugins
        loop = new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            await serve_single(settings, plugin_map, stop, ready.set, clock)

        def thread_main() -> None:
            try:
                loop.run_until_complete(main())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        thread = threading.Thread(target=thread_main, name="a6runner-test", daemon=True)
        thread.start()
        started = ready.wait(30)
        if failure:
            raise failure[0]
        if not started:
            loop.call_soon_threadsafe(loop.stop)
            raise TimeoutError(f"the runner did not listen on {settings.socket_path} within 30 s")
        try:
            yield RunnerHandle(settings.socket_path, plugin_map)
        finally:
            if stop is not None:
                loop.call_soon_threadsafe(stop.set)
            thread.join(5)


class RunnerProcess(RunnerHandle):
    """A runner started as its own process (``python -m a6runner run``), as APISIX does."""

    def __init__(self, socket_path: str, process: subprocess.Popen[bytes], log_path: str) -> None:
        super().__init__(socket_path)
        self.process = process
        """The runner's process."""
        self.log_path = log_path
        """The file its stdout and stderr go to."""

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def log(self) -> str:
        """Everything the runner wrote to stderr so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def _can_connect(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


@contextlib.contextmanager
def spawn_runner(
    args: Sequence[str] = (),
    *,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    socket_path: str | None = None,
    conf_expire_time: float | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[RunnerProcess]:
    """Start ``a6-runner run ARGS`` with APISIX's environment variables and wait until
    it accepts connections. Its stdout and stderr go to a file: ``handle.log()``.

    ``command`` starts another runner instead of ``python -m a6runner run`` (``args`` are
    appended to it): the Go runner's binary, ``a6-runner run --workers 2``, anything that
    listens where ``APISIX_LISTEN_ADDRESS`` says. ``env`` replaces this process's
    environment; ``conf_expire_time`` sets ``APISIX_CONF_EXPIRE_TIME``. On leaving the
    block the runner is killed if still running, and the log, a socket left behind and
    the temporary folder (when ``socket_path`` is not given) are removed.
    """
    argv = [*([sys.executable, "-m", "a6runner", "run"] if command is None else command), *args]
    with _socket_path(socket_path) as path:
        log_path = path + ".log"
        full_env = dict(os.environ if env is None else env)
        full_env["APISIX_LISTEN_ADDRESS"] = f"unix:{path}"
        if conf_expire_time is not None:
            # whole seconds as APISIX writes them ("3600", which the Go runner parses)
            seconds = float(conf_expire_time)
            full_env["APISIX_CONF_EXPIRE_TIME"] = (
                str(int(seconds)) if seconds.is_integer() else str(conf_expire_time)
            )
        try:
            with open(log_path, "wb") as log_file:
                process = subprocess.Popen(
                    argv,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            handle = RunnerProcess(path, process, log_path)
            deadline = time.monotonic() + startup_timeout
            try:
                while not (os.path.exists(path) and _can_connect(path)):
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"runner exited with {process.returncode}: {handle.log()}"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"runner did not listen on {path} in {startup_timeout}s")
                    time.sleep(0.02)
                yield handle
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
        finally:
            _remove_socket(path)
            with contextlib.suppress(OSError):
                os.unlink(log_path)
