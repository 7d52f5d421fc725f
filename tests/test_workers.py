"""``--workers 2``: tokens across workers, same-key idempotence, a killed worker replaced,
limit-req's bucket shared, clean shutdown. Over the real socket, runner as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import worker_pids
from support_plugins import Holding
from worker_connections import connection_on_each_worker

from a6runner._confstore import ConfStore
from a6runner._kernels import codec
from a6runner._reload import PluginLoader
from a6runner._runner import Settings
from a6runner._server import Listener, Server
from a6runner._services import LocalServices
from a6runner._workers import Supervisor
from a6runner.testing import AsyncClient, Client, RunnerProcess, decode_reply, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z, ...), None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")"
    return stat.rsplit(")", 1)[1].split()[0]


def served_by(apisix: Client, token: int, key: str) -> int:
    """Check same-key idempotence and the token on ``apisix``'s connection; return the pid
    of the worker that served it."""
    assert apisix.prepare_conf([("which-process", {})], key=key) == token
    reply = apisix.http_req_call(token)
    assert reply.action == "stop", reply.error
    return int(reply.body or b"0")


def every_worker_served(runner: RunnerProcess, token: int, key: str, folder: Path) -> set[int]:
    """The pids of the workers that served ``token`` (and its key), one connection each."""
    connections = connection_on_each_worker(runner, folder)
    try:
        return {served_by(apisix, token, key) for apisix in connections.values()}
    finally:
        for apisix in connections.values():
            apisix.close()


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with spawn_runner(["--workers", "2", "--plugins", SUPPORT]) as handle:
        deadline = time.monotonic() + 60
        while len(worker_pids(handle)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(worker_pids(handle)) == 2, handle.log()
        yield handle


def test_tokens_and_keys_hold_across_workers(runner: RunnerProcess, tmp_path: Path) -> None:
    workers = worker_pids(runner)
    assert len(workers) == 2
    with runner.client() as first:
        token = first.prepare_conf([("which-process", {})], key="route-1")
    assert every_worker_served(runner, token, "route-1", tmp_path / "keyed") == workers
    # a token prepared without key on one worker is known to the other too
    with runner.client() as first:
        anonymous = first.prepare_conf([("which-process", {})])
    connections = connection_on_each_worker(runner, tmp_path / "anonymous")
    seen = set()
    for pid, apisix in connections.items():
        reply = apisix.http_req_call(anonymous)
        apisix.close()
        assert reply.action == "stop", reply.error
        assert int(reply.body or b"0") == pid
        seen.add(pid)
    assert seen == workers


def test_a_killed_worker_is_replaced_and_tokens_survive(
    runner: RunnerProcess, tmp_path: Path
) -> None:
    with runner.client() as first:
        token = first.prepare_conf([("which-process", {})], key="route-k")
    before = worker_pids(runner)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60  # a bound for a broken supervisor, not a timing
    while time.monotonic() < deadline:
        now = worker_pids(runner)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    after = worker_pids(runner)
    assert victim not in after and len(after) == 2
    assert every_worker_served(runner, token, "route-k", tmp_path) == after
    assert "died with signal SIGKILL: starting a new one" in runner.log()


def test_limit_req_bucket_is_shared_by_the_workers(runner: RunnerProcess) -> None:
    async def main() -> list[float]:
        setup = await runner.async_client()
        token = await setup.prepare_conf([("limit-req", {"rate": 5, "burst": 1})])
        await setup.close()
        clients = [await runner.async_client() for _ in range(6)]
        started = time.monotonic()

        async def one(c) -> float:
            reply = await c.http_req_call(token)
            assert reply.kind == "http_req_call" and reply.action == "none", reply
            return time.monotonic() - started

        done = await asyncio.gather(*(one(c) for c in clients))
        for c in clients:
            await c.close()
        return done

    finished = asyncio.run(main())
    # one bucket for the runner: 1 at once, then one every 0.2 s -> the 6th after >= 1 s.
    # (a bucket per worker would let the last one through after about 0.4-0.6 s)
    assert max(finished) >= 1.0


def test_sigterm_stops_every_worker_and_removes_the_socket(runner: RunnerProcess) -> None:
    workers = worker_pids(runner)
    with runner.client() as apisix:
        token = apisix.prepare_conf([("stopper", {"body": "x"})])
        assert apisix.http_req_call(token).body == b"x"
    assert runner.stop() == 0
    assert not os.path.exists(runner.socket_path)
    for pid in workers:
        assert process_state(pid) in (None, "Z")  # gone, or a zombie until the test reaps
    assert "Traceback" not in runner.log()


def test_single_connection_many_calls_with_workers(runner: RunnerProcess) -> None:
    with Client(runner.socket_path) as apisix:
        token = apisix.prepare_conf([("echo-input", {})])
        for i in range(200):
            reply = apisix.http_req_call(token, id=i, path=f"/{i}")
            assert reply.id == i and b'"/%d"' % i in (reply.body or b"")


def test_a_busy_worker_leaves_new_connections_to_the_other(
    runner: RunnerProcess, tmp_path: Path
) -> None:
    """Both workers accept on the shared socket, and one whose event loop is busy takes no
    new connection: the other one serves them all (checked with each worker busy)."""
    workers = worker_pids(runner)
    with runner.client() as setup:
        which = setup.prepare_conf([("which-process", {})])
    on_worker: dict[int, Client] = {}
    opened: list[Client] = []
    try:
        held_connection = runner.client()
        opened.append(held_connection)
        for round_ in range(2):
            held = Holding(tmp_path / str(round_), block=True)
            token = held_connection.prepare_conf([("hold", held.conf)])
            held_connection.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
            busy = held.wait_entered()
            (free,) = workers - {busy}
            for _ in range(6):
                apisix = runner.client()
                opened.append(apisix)
                reply = apisix.http_req_call(which)
                assert reply.action == "stop", reply.error
                assert int(reply.body or b"0") == free
                on_worker[free] = apisix
            held.release()
            reply = decode_reply(*held_connection.read_frame())
            assert reply.action == "stop" and reply.body == b"released"
            held_connection = on_worker[free]  # next round: hold the other worker
    finally:
        for client in opened:
            client.close()
    assert set(on_worker) == workers


def test_after_an_accept_the_server_leaves_the_next_connection_to_the_others(
    tmp_path: Path,
) -> None:
    """The accept pause of --workers: after one accept a worker stops accepting for a while,
    so the next connection of a burst stays in the backlog for another worker to take."""
    path = str(tmp_path / "r.sock")
    listener = Listener(path, 0o700).sock

    async def main() -> None:
        server = Server(listener, ConfStore({}, 60.0), LocalServices(), accept_pause=3600)
        await server.start()
        first = await AsyncClient.connect(path)
        assert (await first.http_req_call(1)).error == "CONF_TOKEN_NOT_FOUND"  # accepted
        second = await AsyncClient.connect(path)  # queued in the listener's backlog
        # a whole call's worth of event-loop rounds: a listening server would accept it now
        assert (await first.http_req_call(1)).error == "CONF_TOKEN_NOT_FOUND"
        assert len(server.connections) == 1
        taken, _ = listener.accept()  # still there for "another worker" to take
        taken.close()
        await second.close()
        await first.close()
        await server.stop(grace=0)

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_without_the_pause_a_single_process_server_takes_every_connection(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "r.sock")
    listener = Listener(path, 0o700).sock

    async def main() -> None:
        server = Server(listener, ConfStore({}, 60.0), LocalServices())  # the default
        await server.start()
        first = await AsyncClient.connect(path)
        assert (await first.http_req_call(1)).error == "CONF_TOKEN_NOT_FOUND"
        second = await AsyncClient.connect(path)
        assert (await first.http_req_call(1)).error == "CONF_TOKEN_NOT_FOUND"
        with pytest.raises(BlockingIOError):  # the server took it while serving the call
            listener.accept()
        assert (await second.http_req_call(1)).error == "CONF_TOKEN_NOT_FOUND"
        await second.close()
        await first.close()
        await server.stop(grace=0)

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_errors_are_answered_by_the_workers_too(runner: RunnerProcess) -> None:
    with runner.client() as apisix:
        assert apisix.http_req_call(0xDEAD0000).error == "CONF_TOKEN_NOT_FOUND"
        with pytest.raises(RuntimeError, match="SERVICE_UNAVAILABLE"):
            apisix.prepare_conf([("filters-that-cannot-be-read", {})])
        token = apisix.prepare_conf([("stopper", {"body": "still here"})], key="k")
        assert apisix.prepare_conf([("stopper", {"body": "still here"})], key="k") == token
        assert apisix.http_req_call(token).body == b"still here"
    assert "PrepareConf failed" in runner.log()


def test_a_worker_that_does_not_stop_in_time_is_killed(
    runner: RunnerProcess, tmp_path: Path
) -> None:
    held = Holding(tmp_path, block=True)  # its event loop never sees the SIGTERM
    with runner.client() as apisix:
        token = apisix.prepare_conf([("hold", held.conf)])
        apisix.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
        stuck = held.wait_entered()
        assert runner.stop(timeout=30) == 0
    assert process_state(stuck) in (None, "Z")
    assert "workers still running: killing them" in runner.log()


def test_workers_stop_when_the_supervisor_is_gone(runner: RunnerProcess) -> None:
    workers = worker_pids(runner)
    runner.process.kill()
    runner.process.wait(10)
    deadline = time.monotonic() + 30
    while any(process_state(pid) not in (None, "Z") for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.02)
    assert "Traceback" not in runner.log()


def test_the_supervisor_answers_its_requests_and_refuses_unknown_ones(tmp_path: Path) -> None:
    loader = PluginLoader(bundled=False, entry_points=False)
    supervisor = Supervisor(Settings(str(tmp_path / "r.sock"), conf_expire_time=10), {}, loader)
    conf = [("say", b"{}")]
    token, expires_at = supervisor.answer(("prepare", "key", conf))
    assert supervisor.answer(("prepare", "key", conf)) == (token, expires_at)
    assert supervisor.answer(("lookup", token)) == (conf, expires_at)
    assert supervisor.answer(("lookup", token + 1)) is None
    assert supervisor.answer(("reserve", "bucket", 1.0, 1)) == 0.0
    with pytest.raises(ValueError, match="unknown supervisor request 'nope'"):
        supervisor.answer(("nope",))
