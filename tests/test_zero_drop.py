"""Reloads lose no call: pooled, always-busy APISIX-like connections (each one sends its
next call as soon as the previous answer arrives, as nginx's keepalive pool does under
load) are driven through several SIGHUP reloads, one process and ``--workers 2``. The
client never retries: a call that fails is counted as lost. With workers, a replaced
worker hands each connection to its successor (SCM_RIGHTS) instead of closing it.
Every wait observes an event (a log line, a reply, a file); nothing depends on timing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from pooled import PooledConnection, busy, progressed
from processes import WAIT, wait_for_log, wait_until

from a6runner._kernels import codec
from a6runner.testing import RunnerProcess, decode_reply, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

CONNECTIONS = 16
RELOADS = 3

PLUGIN = """\
import asyncio
import os

from a6runner import Plugin

VERSION = {version!r}


class Version(Plugin):
    name = "version"

    def request_filter(self, conf, req):
        if conf.get("gate"):
            return self._gated(conf, req)
        if conf.get("async"):
            return self._later(req)
        req.respond(200, f"{{VERSION}} pid-{{os.getpid()}} call-{{req.id}}")

    async def _later(self, req):
        await asyncio.sleep(0)
        req.respond(200, f"{{VERSION}} pid-{{os.getpid()}} call-{{req.id}}")

    async def _gated(self, conf, req):
        with open(conf["started"] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(conf["started"] + ".tmp", conf["started"])
        while not os.path.exists(conf["gate"]):
            await asyncio.sleep(0.005)
        req.respond(200, f"{{VERSION}} pid-{{os.getpid()}} call-{{req.id}}")
"""


def write_plugin(path: Path, version: str) -> None:
    path.write_text(PLUGIN.format(version=version))


def drive_through_reloads(runner: RunnerProcess, source: Path) -> list[PooledConnection]:
    pool = [
        PooledConnection(runner.socket_path, "version", {"async": n % 2 == 1})
        for n in range(CONNECTIONS)
    ]
    with busy(pool):
        for connection in pool:
            assert connection.connected.wait(WAIT)
        for reload in range(1, RELOADS + 1):
            wait_until(progressed(pool), "calls before the reload")  # every one busy
            write_plugin(source, f"v{reload + 1}")
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, done_line(runner), count=reload)
        wait_until(progressed(pool), "calls after the last reload")
    return pool


def done_line(runner: RunnerProcess) -> str:
    return "reload done" if "--workers" in runner.process.args else "reloaded: 1 plugins"


@pytest.mark.parametrize("workers", [1, 2])
def test_reloads_under_load_lose_no_call(tmp_path: Path, workers: int) -> None:
    source = tmp_path / "version_plugin.py"
    write_plugin(source, "v1")
    args = ["--no-bundled", "--no-entry-points", "--plugins", str(source)]
    if workers > 1:
        args = ["--workers", str(workers), *args]
    with spawn_runner(args) as runner:
        wait_for_log(runner, "listening on")
        pool = drive_through_reloads(runner, source)
        log = runner.log()
        assert runner.stop(WAIT) == 0
    failures = [c.failure for c in pool if c.failure]
    assert failures == [], failures
    answered = sum(len(c.answers) for c in pool)
    assert answered == sum(c.sent for c in pool)  # every call sent got its reply
    for connection in pool:  # one connection saw every version, in order
        versions = [v for v, _ in connection.answers]
        assert versions == sorted(versions, key=lambda v: int(v[1:]))
        assert versions[0] == "v1" and versions[-1] == f"v{RELOADS + 1}"
    if workers > 1:
        # each connection was served by several processes: handed over, never closed
        assert all(len({pid for _, pid in c.answers}) > 1 for c in pool)
        assert log.count("replaced by pid") == workers * RELOADS
    assert "Traceback" not in log and "died" not in log and "abandoned" not in log


def test_a_call_in_flight_during_a_reload_is_answered_and_its_connection_kept(
    tmp_path: Path,
) -> None:
    source = tmp_path / "version_plugin.py"
    write_plugin(source, "v1")
    gate, started = tmp_path / "gate", tmp_path / "started"
    args = ["--workers", "2", "--no-bundled", "--no-entry-points", "--plugins", str(source)]
    with spawn_runner(args) as runner:
        wait_for_log(runner, "listening on")
        with runner.client(timeout=WAIT) as apisix:
            token = apisix.prepare_conf([("version", {"gate": str(gate), "started": str(started)})])
            apisix.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
            wait_until(started.exists, "the call to start")
            old_pid = int(started.read_text())
            write_plugin(source, "v2")
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, f"(pid {old_pid}) replaced by pid")
            gate.touch()  # the call in flight finishes on the old worker, with the old code
            reply = decode_reply(*apisix.read_frame())
            assert reply.id == 1 and (reply.body or b"").decode() == f"v1 pid-{old_pid} call-1"
            wait_for_log(runner, "reload done")
            # the same connection, now served by a new worker with the new code
            for call_id in range(2, 12):
                reply = apisix.http_req_call(token, id=call_id)
                version, pid, _ = (reply.body or b"").decode().split()
                assert reply.id == call_id and version == "v2" and pid != f"pid-{old_pid}"
        assert runner.stop(WAIT) == 0


# -- the pieces, in this process -----------------------------------------------------------


def test_a_retiring_server_passes_each_connection_on_once_it_holds_nothing(
    tmp_path: Path,
) -> None:
    """Server.retire with a hand-off: an idle connection goes at once, one with a call in
    flight right after its answer; another server adopts each, and what the peer sends
    after the hand-off (still in the socket) is answered there. A stopped server adopts
    nothing (the connection is closed)."""
    import asyncio
    import socket

    from a6runner import Plugin
    from a6runner._confstore import ConfStore, PreparedConf
    from a6runner._server import Listener, Server
    from a6runner._services import LocalServices
    from a6runner.testing import AsyncClient

    class Passed:
        def __init__(self) -> None:
            self.fds: list[int] = []
            self.arrived = asyncio.Event()

        def receive(self, server: Server) -> None:
            raise AssertionError("not used here")

        def send(self, fd: int) -> None:
            self.fds.append(fd)
            self.arrived.set()

        async def flush(self) -> None:
            pass

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        class Gated(Plugin):
            name = "gated"

            async def request_filter(self, conf: object, req: object) -> None:
                started.set()
                await release.wait()
                req.respond(200, f"served by {id(self)}")  # type: ignore[attr-defined]

        old_plugin, new_plugin = Gated(), Gated()
        old_listener = Listener(str(tmp_path / "old.sock"), 0o700)
        new_listener = Listener(str(tmp_path / "new.sock"), 0o700)
        confs = ConfStore({"gated": old_plugin}, 3600)
        old = Server(old_listener.sock, confs, LocalServices())
        new_confs = ConfStore({"gated": new_plugin}, 3600)
        new = Server(new_listener.sock, new_confs, LocalServices())
        await old.start()
        await new.start()
        try:
            idle = await AsyncClient.connect(old_listener.path)
            busy = await AsyncClient.connect(old_listener.path)
            token = await idle.prepare_conf([("gated", {})], key="k")
            assert await busy.prepare_conf([("gated", {})], key="k") == token
            call = asyncio.ensure_future(busy.http_req_call(token))
            await started.wait()
            passed = Passed()
            retiring = asyncio.ensure_future(old.retire(30, passed))
            await passed.arrived.wait()
            assert len(passed.fds) == 1 and not call.done()  # the idle one, at once
            # the successor knows the token (a worker asks the supervisor for it)
            parsed = PreparedConf.parse(new_confs.plugins, [("gated", b"{}")])
            new_confs.tokens.install(token, parsed, time.monotonic() + 3600)
            new.adopt(socket.socket(fileno=passed.fds.pop()))
            release.set()
            assert (await call).body == f"served by {id(old_plugin)}".encode()
            await retiring  # the busy one went right after its answer
            assert not old.connections and len(passed.fds) == 1
            new.adopt(socket.socket(fileno=passed.fds.pop()))
            for client in (idle, busy):  # both go on, served by the adopter
                reply = await client.http_req_call(token)
                assert reply.body == f"served by {id(new_plugin)}".encode()
            assert len(new.connections) == 2
            await new.stop(0)
            extra, other = socket.socketpair()
            new.adopt(extra)  # stopped: closed, not served
            assert other.recv(1) == b""
            other.close()
            await idle.close()
            await busy.close()
        finally:
            old_listener.close()
            new_listener.close()

    asyncio.run(main())
