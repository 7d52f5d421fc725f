"""Test plugins the way APISIX uses them: over the real unix socket.

``run_runner()`` starts a runner in this process (in a background thread) with the plugins
you give it; ``Client`` speaks APISIX's side of the protocol: PrepareConf, then request /
response calls with realistic defaults, answering the runner's ExtraInfo questions from the
vars and bodies you pass, and returning each reply as a plain ``Reply`` object.

Example (pytest)::

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
import contextlib
import ipaddress
import itertools
import json
import os
import socket
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
    "Client",
    "Reply",
    "RunnerHandle",
    "RunnerProcess",
    "decode_reply",
    "run_runner",
    "spawn_runner",
]

METHOD_NUMBERS = {name: i for i, name in enumerate(METHODS)}
ERROR_NAMES = {0: "BAD_REQUEST", 1: "SERVICE_UNAVAILABLE", 2: "CONF_TOKEN_NOT_FOUND"}
INFO_NAMES = {1: "var", 2: "req_body", 3: "resp_body"}

Entries = list[tuple[str, "str | None"]]
EntriesIn = Iterable[tuple[str, "str | bytes | None"]] | Mapping[str, "str | bytes | None"]


@dataclass
class Reply:
    """A decoded reply from the runner.

    ``kind`` is the frame: ``"prepare_conf"``, ``"http_req_call"``, ``"http_resp_call"`` or
    ``"error"`` (then ``error`` is BAD_REQUEST / SERVICE_UNAVAILABLE / CONF_TOKEN_NOT_FOUND).
    For an HTTPReqCall, ``action`` is ``"none"``, ``"stop"`` (``status``, ``headers``,
    ``body``) or ``"rewrite"`` (``path``, ``headers``, ``args``, ``resp_headers``, ``body``).
    For an HTTPRespCall, ``status`` (0 = unchanged), ``headers`` and ``body`` (None = unchanged).
    ``asked`` lists the ExtraInfo questions the runner asked during the call, in order, as
    ``("var", name)``, ``("req_body", None)`` or ``("resp_body", None)``.
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

    def header(self, name: str) -> str | None:
        """Value of the last entry named ``name`` (case-insensitive) in ``headers``."""
        found = None
        for n, v in self.headers:
            if n.lower() == name.lower():
                found = v
        return found

    def header_values(self, name: str) -> list[str | None]:
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


# -- APISIX's side of a call (sans I/O) ----------------------------------------------------


def _entries_in(entries: EntriesIn) -> list[tuple[str, str | bytes | None]]:
    return list(entries.items()) if isinstance(entries, Mapping) else list(entries)


def _conf_value(value: Any) -> str | bytes:
    return value if isinstance(value, str | bytes) else json.dumps(value)


def _src_ip(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return ipaddress.ip_address(value).packed


DEFAULT_HEADERS = (("host", "localhost"), ("user-agent", "a6runner-testing/1"), ("accept", "*/*"))


@dataclass
class CallData:
    """What APISIX knows during one call, used to answer ExtraInfo questions."""

    vars: Mapping[str, str | bytes | None]
    req_body: bytes | None
    resp_body: bytes | None

    def answer(self, kind: str, name: str | None) -> bytes:
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


def _as_bytes(body: bytes | str | None) -> bytes | None:
    return body.encode() if isinstance(body, str) else body


class _CallBuilder:
    """Frames for APISIX's calls, with ids numbered from 0 like an APISIX worker."""

    def __init__(self) -> None:
        self._ids = itertools.count(0)

    def next_id(self, id: int | None) -> int:
        return next(self._ids) if id is None else id

    @staticmethod
    def prepare_conf(conf: Sequence[tuple[str, Any]], key: str | None) -> bytes:
        return codec.build_prepare_conf_req([(n, _conf_value(v)) for n, v in conf], key)

    @staticmethod
    def http_req_call(
        id: int,
        token: int,
        method: str,
        path: str,
        args: EntriesIn,
        headers: EntriesIn | None,
        src_ip: str | bytes | None,
    ) -> bytes:
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
    def http_resp_call(id: int, token: int, status: int, headers: EntriesIn | None) -> bytes:
        hdrs = (("content-type", "text/plain"),) if headers is None else headers
        return codec.build_http_resp_call_req(id, token, status, _entries_in(hdrs))


# -- blocking client ------------------------------------------------------------------------


class Client:
    """APISIX's side of one connection, blocking. Use as a context manager."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(socket_path)
        self._calls = _CallBuilder()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # raw frames, for protocol tests
    def send_raw(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes]:
        header = self._recv_exactly(4)
        frame_type, length = header[0], int.from_bytes(header[1:4], "big")
        return frame_type, self._recv_exactly(length)

    def _recv_exactly(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._sock.recv(min(n - len(chunks), 1 << 20))
            if not chunk:
                raise ConnectionError("runner closed the connection")
            chunks += chunk
        return bytes(chunks)

    def exchange(self, frame: bytes, data: CallData | None = None) -> Reply:
        """Send a call frame; answer ExtraInfo questions from ``data``; return the reply."""
        self.send_raw(frame)
        asked: list[tuple[str, str | None]] = []
        while True:
            frame_type, payload = self.read_frame()
            if frame_type == codec.RPC_EXTRA_INFO:
                question = decode_extra_info_req(payload)
                asked.append(question)
                self.send_raw((data or CallData({}, None, None)).answer(*question))
                continue
            reply = decode_reply(frame_type, payload)
            reply.asked = asked
            return reply

    def prepare_conf(self, conf: Sequence[tuple[str, Any]], key: str | None = None) -> int:
        """PrepareConf with ``[(plugin_name, conf)]`` (a dict/list conf is JSON-encoded);
        returns the token. Raises RuntimeError if the runner answered an error."""
        reply = self.exchange(self._calls.prepare_conf(conf, key))
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
        frame = self._calls.http_req_call(
            self._calls.next_id(id), conf_token, method, path, args, headers, src_ip
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
        frame = self._calls.http_resp_call(self._calls.next_id(id), conf_token, status, headers)
        return self.exchange(frame, CallData(vars or {}, None, _as_bytes(body)))


# -- asyncio client ---------------------------------------------------------------------------


class AsyncClient:
    """APISIX's side of one connection, for asyncio tests (many connections at once)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._calls = _CallBuilder()

    @classmethod
    async def connect(cls, socket_path: str) -> AsyncClient:
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=1 << 25)
        return cls(reader, writer)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read_frame(self) -> tuple[int, bytes]:
        header = await self._reader.readexactly(4)
        length = int.from_bytes(header[1:4], "big")
        return header[0], await self._reader.readexactly(length)

    async def exchange(self, frame: bytes, data: CallData | None = None) -> Reply:
        self._writer.write(frame)
        await self._writer.drain()
        asked: list[tuple[str, str | None]] = []
        while True:
            frame_type, payload = await self.read_frame()
            if frame_type == codec.RPC_EXTRA_INFO:
                question = decode_extra_info_req(payload)
                asked.append(question)
                self._writer.write((data or CallData({}, None, None)).answer(*question))
                continue
            reply = decode_reply(frame_type, payload)
            reply.asked = asked
            return reply

    async def prepare_conf(self, conf: Sequence[tuple[str, Any]], key: str | None = None) -> int:
        reply = await self.exchange(self._calls.prepare_conf(conf, key))
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
        frame = self._calls.http_req_call(
            self._calls.next_id(id), conf_token, method, path, args, headers, src_ip
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
        frame = self._calls.http_resp_call(self._calls.next_id(id), conf_token, status, headers)
        return await self.exchange(frame, CallData(vars or {}, None, _as_bytes(body)))


# -- runners to test against ------------------------------------------------------------------


def _temp_socket_path() -> str:
    return os.path.join(tempfile.mkdtemp(prefix="a6runner-"), "runner.sock")


class RunnerHandle:
    """A runner serving in a background thread of this process."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listen_address = f"unix:{socket_path}"

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.socket_path, timeout)

    async def async_client(self) -> AsyncClient:
        return await AsyncClient.connect(self.socket_path)


@contextlib.contextmanager
def run_runner(
    plugins: Iterable[type[Plugin]] = (),
    *,
    bundled: bool = False,
    conf_expire_time: float = 3600.0,
    socket_path: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[RunnerHandle]:
    """Run a runner in a background thread for the duration of the ``with`` block.

    ``plugins``: the plugin classes to serve; ``bundled=True`` adds the bundled plugins.
    Confs are kept ``conf_expire_time`` x 1.2 seconds, as in production. ``clock`` is the
    monotonic clock that conf expiry and the limit-req buckets read: pass a fake one to
    let a TTL pass without sleeping.
    """
    from ._registry import build_registry
    from ._runner import Settings, new_event_loop, serve_single

    registry = build_registry(plugins, bundled=bundled, entry_points=False)
    settings = Settings(socket_path or _temp_socket_path(), conf_expire_time)
    loop = new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        served = {n: r.plugin for n, r in registry.items()}
        await serve_single(settings, served, stop, ready.set, clock)

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
        yield RunnerHandle(settings.socket_path)
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(5)


class RunnerProcess(RunnerHandle):
    """A runner started as its own process (``python -m a6runner run``), as APISIX does."""

    def __init__(self, socket_path: str, process: subprocess.Popen[bytes], log_path: str) -> None:
        super().__init__(socket_path)
        self.process = process
        self.log_path = log_path

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
    env: Mapping[str, str] | None = None,
    socket_path: str | None = None,
    conf_expire_time: float | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[RunnerProcess]:
    """Start ``a6-runner run ARGS`` with APISIX's environment variables and wait until
    it accepts connections. Its stderr goes to a file: ``handle.log()``."""
    path = socket_path or _temp_socket_path()
    log_path = path + ".log"
    full_env = dict(os.environ if env is None else env)
    full_env["APISIX_LISTEN_ADDRESS"] = f"unix:{path}"
    if conf_expire_time is not None:
        full_env["APISIX_CONF_EXPIRE_TIME"] = str(conf_expire_time)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "a6runner", "run", *args],
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
                raise RuntimeError(f"runner exited with {process.returncode}: {handle.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"runner did not listen on {path} in {startup_timeout}s")
            time.sleep(0.02)
        yield handle
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
