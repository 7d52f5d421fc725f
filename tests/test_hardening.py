"""Hostile and careless input (issue: hardening), over the real socket, with 1 worker and
with ``--workers 2``. Each test checks three things: the offending connection gets its
answer or is closed, a healthy connection is served correctly during and after, and every
process of the runner is alive at the end. Memory is read from /proc and compared to a
bound; nothing here measures time."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import children

from a6runner._kernels import codec
from a6runner.testing import Client, Reply, RunnerProcess, decode_reply, spawn_runner

HOSTILE = str(Path(__file__).with_name("hostile_plugins.py"))
PROBES = str(Path(__file__).with_name("probe_plugins.py"))
MiB = 1 << 20


# -- the runner's processes -----------------------------------------------------------------


def state(pid: int) -> str | None:
    """The process state letter (R, S, Z...) from /proc/PID/stat, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before, or between open and read
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z", "X")


def accepts(path: Path) -> bool:
    """Something listens on the unix socket ``path`` (the file appears at bind, before
    listen: its existence alone races the runner's startup)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Runner:
    """A spawned runner and its serving processes (the workers, or itself alone)."""

    def __init__(self, handle: RunnerProcess, workers: int) -> None:
        self.handle = handle
        self.workers = workers
        self.servers = [handle.process.pid]
        if workers > 1:
            wait_for(lambda: len(children(handle.process.pid)) == workers, "workers start")
            self.servers = sorted(children(handle.process.pid))

    def assert_alive(self) -> None:
        assert self.handle.process.poll() is None, self.handle.log()
        assert all(alive(p) for p in self.servers), self.handle.log()
        if self.workers > 1:  # the same workers: none died and was replaced
            assert sorted(children(self.handle.process.pid)) == self.servers

    def rss_kib(self) -> dict[int, int]:
        return {p: status_kib(p, "VmRSS") for p in self.servers}

    def peak_growth_mib(self, before: dict[int, int]) -> float:
        """The largest growth of any serving process, from ``before`` to its peak RSS."""
        return max(status_kib(p, "VmHWM") - before[p] for p in self.servers) / 1024

    def log(self) -> str:
        return self.handle.log()


def wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll ``condition()`` until true; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.01)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@contextlib.contextmanager
def start(workers: int, *args: str) -> Iterator[Runner]:
    """The runner, and at the end the check that every serving process exited with it
    (a worker stuck at exit would be an orphan)."""
    argv = ["--plugins", HOSTILE, "--workers", str(workers), *args]
    with spawn_runner(argv) as handle:
        runner = Runner(handle, workers)
        yield runner
    try:
        wait_for(lambda: not any(alive(p) for p in runner.servers), "every process exits")
    finally:
        for pid in runner.servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Healthy:
    """A well-behaved APISIX connection on every serving process of the runner."""

    def __init__(self, runner: Runner) -> None:
        self.clients: dict[int, Client] = {}
        spare: list[Client] = []
        for _ in range(2000):  # connections land where they land: open them until all did
            client = runner.handle.client()
            token = client.prepare_conf([("pid", {})])
            pid = int(client.http_req_call(token).body or b"0")
            if pid in self.clients:
                spare.append(client)
            else:
                self.clients[pid] = client
            if len(self.clients) == len(runner.servers):
                break
        for client in spare:
            client.close()
        assert sorted(self.clients) == runner.servers

    def check(self) -> None:
        """One correct call on every process: each event loop has run since."""
        for pid, client in self.clients.items():
            token = client.prepare_conf([("say", {"body": "still here"})])
            reply = client.http_req_call(token)
            assert (reply.action, reply.body) == ("stop", b"still here")
            token = client.prepare_conf([("pid", {})])
            assert client.http_req_call(token).body == str(pid).encode()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@contextlib.contextmanager
def healthy(runner: Runner) -> Iterator[Healthy]:
    h = Healthy(runner)
    try:
        yield h
    finally:
        h.close()


class Raw:
    """APISIX's side of a connection without its manners: frames as bytes, by hand."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes]:
        header = self._exactly(4)
        return header[0], self._exactly(int.from_bytes(header[1:], "big"))

    def reply(self) -> Reply:
        return decode_reply(*self.read_frame())

    def _exactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(min(n - len(data), 4 * MiB))
            if not chunk:
                raise ConnectionError("closed by the runner")
            data += chunk
        return bytes(data)

    def closed_by_runner(self) -> bool:
        """True when the runner closed this connection (EOF, or a reset)."""
        try:
            while self.sock.recv(1 << 16):
                pass
        except ConnectionResetError:
            pass
        return True

    def unread_by_runner(self) -> int:
        """Bytes we sent that the runner has not read yet (SIOCOUTQ)."""
        raw = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        return int(struct.unpack("i", raw)[0])

    def prepare(self, name: str, conf: str = "{}") -> int:
        self.send(codec.build_prepare_conf_req([(name, conf)], None))
        return self.reply().conf_token

    def close(self) -> None:
        self.sock.close()


def req_call(id: int, token: int) -> bytes:
    return codec.build_http_req_call_req(id, token, 0, "/", [], [("host", "x")], b"\x7f\0\0\1")


def serving_pid(conn: Raw) -> int:
    """Which process serves ``conn``."""
    conn.send(req_call(0, conn.prepare("pid")))
    return int(conn.reply().body or b"0")


def connection_to(runner: Runner, pid: int) -> Raw:
    """A new connection served by process ``pid`` (connections land where they land)."""
    for _ in range(2000):
        conn = Raw(runner.handle.socket_path)
        if serving_pid(conn) == pid:
            return conn
        conn.close()
    raise AssertionError(f"no connection reached process {pid}")


class Clock:
    """The fake clock of one serving process (probe_plugins.py), moved through the healthy
    connection to that process."""

    def __init__(self, good: Healthy, pid: int) -> None:
        self.client = good.clients[pid]
        self.advance(0)  # in place from now on

    def advance(self, seconds: float) -> int:
        """Move it; how often the process has read it so far."""
        token = self.client.prepare_conf([("fake-clock", {"advance": seconds})])
        return int(self.client.http_req_call(token).body or b"0")

    def next_sweep(self) -> None:
        """Return once the sweep has read the clock twice more: one whole sweep ran."""
        readings = self.advance(0)
        wait_for(lambda: self.advance(0) >= readings + 2, "the sweep runs")


def start_body_call(conn: Raw) -> None:
    """A call whose plugin asks for the request body: the runner's question is read here,
    the answer (an ExtraInfo frame, as large as the body) is the caller's to send."""
    conn.send(req_call(1, conn.prepare("body-length")))
    assert conn.read_frame()[0] == codec.RPC_EXTRA_INFO


def body_answer(size: int) -> bytes:
    return codec.build_extra_info_resp(b"b" * size)


def waiting_for_memory(conn: Raw, frame: bytes) -> threading.Thread:
    """Send ``frame`` from a thread once the runner has read its first 64 KiB (its header:
    the runner knows its size and waits for frame memory, unread, when it does not fit)."""
    conn.send(frame[: 64 << 10])
    wait_for(lambda: conn.unread_by_runner() == 0, "the runner reads the header")
    rest = threading.Thread(target=conn.send, args=(frame[64 << 10 :],))
    rest.start()
    return rest


def peer_closed(conn: Raw) -> bool:
    """The runner closed ``conn`` (whatever it sent that we have not read yet)."""
    poller = select.poll()
    poller.register(conn.sock, select.POLLRDHUP)
    return bool(poller.poll(0))


# -- every frame gets an answer or a close --------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"garbage", codec.build_extra_info_resp(b"x")[4:]])
def test_an_extra_info_frame_outside_a_call_is_a_bad_request(workers: int, payload: bytes) -> None:
    with start(workers) as runner, healthy(runner) as good:
        bad = Raw(runner.handle.socket_path)
        bad.send(codec.encode_frame(codec.RPC_EXTRA_INFO, payload))
        assert bad.reply().error == "BAD_REQUEST"
        token = bad.prepare("say", '{"body": "ok"}')  # the connection is still usable
        bad.send(req_call(1, token))
        assert bad.reply().body == b"ok"
        good.check()
        runner.assert_alive()


def test_a_frame_other_than_the_answer_during_a_question_closes_that_connection(
    workers: int,
) -> None:
    with start(workers) as runner, healthy(runner) as good:
        bad = Raw(runner.handle.socket_path)
        token = bad.prepare("ask-var")
        bad.send(req_call(1, token))
        assert bad.read_frame()[0] == codec.RPC_EXTRA_INFO  # the runner asks remote_addr...
        bad.send(req_call(2, token))  # ...and gets a new call instead of the answer
        assert bad.closed_by_runner()
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert log.count("arrived while a call was waiting for an ExtraInfo answer") == 1


# -- memory bounded whatever the peer does ---------------------------------------------------


def test_a_peer_that_never_reads_its_replies_cannot_swell_the_runner(workers: int) -> None:
    calls, size = 40, 12 * MiB
    with start(workers) as runner, healthy(runner) as good:
        bad = Raw(runner.handle.socket_path)
        token = bad.prepare("big-reply", f'{{"size": {size}}}')
        before = runner.rss_kib()
        bad.send(b"".join(req_call(i, token) for i in range(calls)))  # ~3 KiB in all
        wait_for(lambda: bad.unread_by_runner() == 0, "the runner reads the calls")
        good.check()  # every event loop ran after that read: replies built by now were built
        assert runner.peak_growth_mib(before) < 64, f"{calls} replies of 12 MiB were built"
        for i in range(calls):  # nothing was lost: every call is answered, in order
            reply = bad.reply()
            assert (reply.id, reply.action, len(reply.body or b"")) == (i, "stop", size)
        assert runner.peak_growth_mib(before) < 64
        good.check()
        runner.assert_alive()


def test_many_large_frames_at_once_wait_their_turn_and_are_all_answered(workers: int) -> None:
    conns, size, cap_mib = 40, 15 * MiB, 32
    body = b"b" * size
    with start(workers, "--max-frame-memory", str(cap_mib)) as runner, healthy(runner) as good:
        before = runner.rss_kib()
        answers: list[bytes | None] = [None] * conns
        failures: list[BaseException] = []

        def one(i: int) -> None:
            try:
                with runner.handle.client(timeout=120) as apisix:
                    token = apisix.prepare_conf([("body-length", {})])
                    answers[i] = apisix.http_req_call(token, body=body).body
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert answers == [str(size).encode()] * conns  # every legitimate frame answered
        growth = runner.peak_growth_mib(before)
        assert growth < cap_mib + 64, f"peak RSS grew {growth:.0f} MiB"
        good.check()
        runner.assert_alive()


# The worst case the README's hardening section states, in MiB, for a serving process
# with ``connections`` whose calls hold no frame (beyond its baseline and the plugins').
def memory_bound_mib(max_memory_mib: int, connections: int) -> float:
    return max_memory_mib + 48 + connections * (64 + 256 + 5) / 1024


@pytest.mark.slow
@pytest.mark.runtime
def test_replies_nobody_reads_are_bounded_in_total_whatever_the_connections(
    workers: int,
) -> None:
    conns, size, budget_mib = 200, 12 * MiB, 64
    with start(workers, "--max-memory", str(budget_mib)) as runner, healthy(runner) as good:
        before = runner.rss_kib()
        bad = [Raw(runner.handle.socket_path) for _ in range(conns)]
        tokens = [c.prepare("big-reply", f'{{"size": {size}}}') for c in bad]
        for conn, token in zip(bad, tokens, strict=True):  # at once, and never read
            conn.send(req_call(1, token))
        for conn in bad:  # each answered (what the socket takes of it) or closed
            assert select.select([conn.sock], [], [], 60)[0]
        good.check()
        growth = runner.peak_growth_mib(before)
        assert growth < memory_bound_mib(budget_mib, conns), f"peak RSS grew {growth:.0f} MiB"
        closed = sum(peer_closed(c) for c in bad)
        kept = conns - closed  # each process keeps what fits its budget
        assert 0 < kept <= workers * budget_mib * MiB // (size - (1 << 20))
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert log.count("connection closed: its peer has not read ") == closed  # once each


@pytest.mark.runtime
@pytest.mark.parametrize("held", ["body", "call"])
def test_a_frame_stays_in_the_budget_until_its_call_ends(
    workers: int, held: str, tmp_path: Path
) -> None:
    size, release = 15 * MiB, tmp_path / "release"
    args = ["--plugins", PROBES, "--max-memory", "32"]
    with start(workers, *args) as runner, healthy(runner) as good:
        keeps = Raw(runner.handle.socket_path)
        pid = serving_pid(keeps)
        clock = Clock(good, pid)
        conf = json.dumps({"release": str(release), "body": held == "body"})
        token = keeps.prepare("keeps-call", conf)
        if held == "body":  # the call asks for the request body: a 15 MiB ExtraInfo answer
            keeps.send(req_call(1, token))
            assert keeps.read_frame()[0] == codec.RPC_EXTRA_INFO
            keeps.send(body_answer(size))
        else:  # the call itself is 15 MiB
            big = [("x-big", "h" * size)]
            keeps.send(codec.build_http_req_call_req(1, token, 0, "/", [], big, b"\x7f\0\0\1"))
        wait_for(lambda: keeps.unread_by_runner() == 0, "the runner reads it")
        waits = connection_to(runner, pid)
        start_body_call(waits)
        rest = waiting_for_memory(waits, body_answer(size))
        clock.next_sweep()  # its event loop turned many times: the other frame still waits
        assert waits.unread_by_runner() > 0
        release.touch()
        assert keeps.reply().body == str(size).encode()
        rest.join()  # the call ended: its frame left the budget, the other frame comes in
        assert waits.reply().body == str(size).encode()
        good.check()
        runner.assert_alive()


@pytest.mark.runtime
def test_a_peer_that_holds_frame_memory_and_reads_no_reply_gives_it_up(workers: int) -> None:
    size = 15 * MiB
    with start(workers, "--max-memory", "32") as runner, healthy(runner) as good:
        holds = Raw(runner.handle.socket_path)
        pid = serving_pid(holds)
        token = holds.prepare("big-reply", f'{{"size": {12 * MiB}}}')
        # a reply it does not read (so it is not read either), and a frame begun behind it
        holds.send(req_call(1, token) + body_answer(size)[:100])
        wait_for(lambda: holds.unread_by_runner() == 0, "the runner reads both")
        waits = connection_to(runner, pid)
        start_body_call(waits)
        waits.send(body_answer(size))  # does not fit beside the frame begun: waits for it
        assert waits.reply().body == str(size).encode()
        assert peer_closed(holds)
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert log.count("connection closed: it holds 15.0 MiB of frame memory that other") == 1


# -- stalled frames end (on each serving process's fake clock) --------------------------------

FRAME_TIMEOUT = 5.0


@pytest.mark.runtime
def test_a_stalled_frame_is_cut_and_its_memory_lets_the_next_through(workers: int) -> None:
    size = 15 * MiB  # two do not fit the 16 MiB of frames a 32 MiB budget allows
    args = ["--plugins", PROBES, "--max-memory", "32", "--frame-timeout", str(FRAME_TIMEOUT)]
    with start(workers, *args) as runner, healthy(runner) as good:
        stalled = Raw(runner.handle.socket_path)
        pid = serving_pid(stalled)
        clock = Clock(good, pid)
        start_body_call(stalled)
        frame = body_answer(size)
        stalled.send(frame[:-1])  # one byte short, for ever
        wait_for(lambda: stalled.unread_by_runner() == 0, "the runner reads it")
        waits = connection_to(runner, pid)
        start_body_call(waits)
        rest = waiting_for_memory(waits, body_answer(size))
        clock.next_sweep()  # it has seen the stalled frame...
        clock.advance(FRAME_TIMEOUT)
        clock.next_sweep()  # ...and sees it stalled for the frame timeout
        assert stalled.closed_by_runner()
        rest.join()  # the memory it held lets the waiting frame in
        assert waits.reply().body == str(size).encode()
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert log.count("a frame stopped arriving") == 1
    assert f"({len(frame) - 1} of its {len(frame)} bytes came, then nothing for 5s" in log


@pytest.mark.runtime
def test_a_slow_frame_and_one_waiting_for_frame_memory_are_never_cut(workers: int) -> None:
    size = 15 * MiB
    args = ["--plugins", PROBES, "--max-memory", "32", "--frame-timeout", str(FRAME_TIMEOUT)]
    with start(workers, *args) as runner, healthy(runner) as good:
        slow = Raw(runner.handle.socket_path)
        pid = serving_pid(slow)
        clock = Clock(good, pid)
        start_body_call(slow)
        frame = body_answer(size)
        slow.send(frame[:-6])
        waits = connection_to(runner, pid)
        start_body_call(waits)
        rest = waiting_for_memory(waits, body_answer(size))
        for i in range(6, 1, -1):  # a byte at a time, over 3 frame timeouts in all
            slow.send(frame[-i : -i + 1])
            wait_for(lambda: slow.unread_by_runner() == 0, "the runner reads it")
            clock.next_sweep()
            clock.advance(FRAME_TIMEOUT * 0.6)
        slow.send(frame[-1:])
        assert slow.reply().body == str(size).encode()
        rest.join()
        assert waits.reply().body == str(size).encode()
        good.check()
        runner.assert_alive()
        assert "a frame stopped arriving" not in runner.log()


# -- deadlines ---------------------------------------------------------------------------------


@pytest.mark.runtime
def test_an_unanswered_question_closes_the_connection_at_the_call_timeout(workers: int) -> None:
    with start(workers, "--call-timeout", "1") as runner, healthy(runner) as good:
        bad = Raw(runner.handle.socket_path)
        token = bad.prepare("ask-var")
        bad.send(req_call(1, token))
        assert bad.read_frame()[0] == codec.RPC_EXTRA_INFO  # never answered
        good.check()  # served while the call waits
        assert bad.closed_by_runner()
        good.check()
        runner.assert_alive()
        assert "no ExtraInfo answer within 1s (call timeout): connection closed" in runner.log()


@pytest.mark.runtime
def test_an_async_filter_still_running_at_the_call_timeout_is_cancelled(workers: int) -> None:
    with start(workers, "--call-timeout", "1") as runner, healthy(runner) as good:
        with runner.handle.client() as apisix:
            token = apisix.prepare_conf([("never-returns", {})])
            assert apisix.http_req_call(token, id=5).error == "SERVICE_UNAVAILABLE"
            ok = apisix.prepare_conf([("say", {"body": "next"})])
            assert apisix.http_req_call(ok).body == b"next"  # the connection goes on
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert "call 5: call still running in plugin 'never-returns' after the 1s call timeout" in log


@pytest.mark.runtime
def test_a_filter_that_ignores_its_cancellation_loses_its_connection(workers: int) -> None:
    with start(workers, "--call-timeout", "1") as runner, healthy(runner) as good:
        bad = Raw(runner.handle.socket_path)
        token = bad.prepare("ignores-cancellation")
        bad.send(req_call(1, token))
        assert bad.closed_by_runner()
        good.check()
        runner.assert_alive()
        assert "ignored its cancellation" in runner.log()


@pytest.mark.runtime
def test_a_filter_that_blocks_the_event_loop_is_named(workers: int) -> None:
    with start(workers) as runner, healthy(runner) as good:
        with runner.handle.client() as apisix:
            conf = {"until_file": runner.handle.log_path, "contains": "has blocked the event"}
            token = apisix.prepare_conf([("blocks-the-loop", conf)])
            # the filter blocks its process until the watchdog has named it in the log
            assert apisix.http_req_call(token).body == b"unblocked"
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert "plugin 'blocks-the-loop' has blocked the event loop for" in log
    assert "hostile_plugins.py:" in log and "in request_filter" in log


# -- no plugin can take the process down ------------------------------------------------------


@pytest.mark.runtime
@pytest.mark.parametrize(
    "what", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError", "MemoryError"]
)
def test_any_exception_from_a_plugin_costs_only_that_call(workers: int, what: str) -> None:
    with start(workers) as runner, healthy(runner) as good:
        with runner.handle.client() as apisix:
            token = apisix.prepare_conf([("raises", {"what": what})])
            assert apisix.http_req_call(token, id=1).error == "SERVICE_UNAVAILABLE"  # sync
            assert apisix.http_resp_call(token, id=2).error == "SERVICE_UNAVAILABLE"  # async
            ok = apisix.prepare_conf([("say", {"body": "fine"})])
            assert apisix.http_req_call(ok).body == b"fine"
        good.check()
        runner.assert_alive()
        log = runner.log()
    assert f"call 1: plugin 'raises' request filter raised {what}" in log
    assert f"call 2: plugin 'raises' response filter raised {what}" in log


@pytest.mark.runtime
@pytest.mark.parametrize(
    ("how", "what"), [("callback", "SystemExit"), ("task", "KeyboardInterrupt")]
)
def test_sys_exit_from_a_plugins_callback_or_task_does_not_stop_the_runner(
    workers: int, how: str, what: str
) -> None:
    with start(workers) as runner, healthy(runner) as good:
        with runner.handle.client() as apisix:
            token = apisix.prepare_conf([("exits-later", {"how": how})])
            logged = f"{what} raised outside any call"
            for n in (1, 2):
                assert apisix.http_req_call(token).body == b"left a bomb behind"
                wait_for(lambda n=n: runner.log().count(logged) == n, "it is logged")
        good.check()
        runner.assert_alive()


@pytest.mark.runtime
def test_sys_exit_in_parse_conf_skips_that_entry(workers: int) -> None:
    with start(workers) as runner, healthy(runner) as good:
        with runner.handle.client() as apisix:
            token = apisix.prepare_conf(
                [("exits-in-parse-conf", {}), ("say", {"body": "conf survived"})]
            )
            assert apisix.http_req_call(token).body == b"conf survived"
        good.check()
        runner.assert_alive()
        assert (
            "conf entry 'exits-in-parse-conf' skipped: its plugin raised SystemExit" in runner.log()
        )


# -- no orphans ----------------------------------------------------------------------------------

FAKE_APISIX = """
import subprocess, sys, time
runner = subprocess.Popen([sys.executable, "-m", "a6runner", "run", *sys.argv[1:]],
                          stdout=sys.stderr)
print(runner.pid, flush=True)
time.sleep(3600)
"""


@pytest.mark.runtime
def test_the_runner_exits_when_apisix_dies(workers: int, tmp_path: Path) -> None:
    path = tmp_path / "runner.sock"
    env = dict(os.environ, APISIX_LISTEN_ADDRESS=f"unix:{path}")
    apisix = subprocess.Popen(
        [sys.executable, "-c", FAKE_APISIX, "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert apisix.stdout is not None
        runner_pid = int(apisix.stdout.readline())
        wait_for(lambda: accepts(path), "the runner listens")
        processes = {runner_pid}
        if workers > 1:
            wait_for(lambda: len(children(runner_pid)) == workers, "workers start")
            processes |= children(runner_pid)
        with Client(str(path)) as client:
            assert client.http_req_call(client.prepare_conf([("say", {"body": "a"})])).body
        apisix.kill()  # SIGKILL: APISIX gets no chance to stop its runner
        apisix.wait()
        wait_for(lambda: not any(alive(p) for p in processes), "every runner process exits")
        wait_for(lambda: not path.exists(), "the socket is removed")
    finally:
        apisix.kill()
        apisix.wait()


@pytest.mark.runtime
def test_workers_exit_when_their_supervisor_is_killed() -> None:
    with start(2, "--no-parent-watch") as runner:
        workers = runner.servers
        os.kill(runner.handle.process.pid, signal.SIGKILL)
        runner.handle.process.wait()
        wait_for(lambda: not any(alive(p) for p in workers), "the workers exit")


@pytest.mark.runtime
def test_no_parent_watch_keeps_the_runner_when_its_parent_dies(tmp_path: Path) -> None:
    path = tmp_path / "runner.sock"
    env = dict(os.environ, APISIX_LISTEN_ADDRESS=f"unix:{path}")
    parent = subprocess.Popen(
        [sys.executable, "-c", FAKE_APISIX, "--no-parent-watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert parent.stdout is not None
    runner_pid = int(parent.stdout.readline())
    try:
        wait_for(lambda: accepts(path), "the runner listens")
        parent.kill()
        parent.wait()
        with Client(str(path)) as client:  # served after its parent is gone
            token = client.prepare_conf([("say", {"body": "on my own"})])
            assert client.http_req_call(token).body == b"on my own"
        assert alive(runner_pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner_pid, signal.SIGTERM)
        wait_for(lambda: not alive(runner_pid), "the runner stops")


# -- never take over a live socket --------------------------------------------------------------


@pytest.mark.runtime
def test_a_second_runner_does_not_take_over_a_live_socket(workers: int) -> None:
    with start(workers) as first, healthy(first) as good:
        path = first.handle.socket_path
        result = subprocess.run(
            [sys.executable, "-m", "a6runner", "run", "--listen", f"unix:{path}"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 1
        assert f"another runner is serving {path}" in result.stderr
        assert "Traceback" not in result.stderr
        assert os.path.exists(path)
        good.check()
        with first.handle.client() as late:  # new connections still reach the first runner
            assert late.http_req_call(late.prepare_conf([("say", {"body": "1st"})])).body
        first.assert_alive()


@pytest.mark.runtime
def test_the_socket_file_is_removed_at_exit_only_while_it_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "runner.sock"
    with spawn_runner(socket_path=str(path)) as runner:
        os.unlink(path)
        replacement = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        replacement.bind(str(path))  # someone else's socket now lives at the path
        try:
            assert runner.stop() == 0
            assert path.exists()
        finally:
            replacement.close()


@pytest.mark.runtime
def test_socket_group_and_mode(tmp_path: Path) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    path = tmp_path / "runner.sock"
    args = ["--socket-group", group, "--socket-mode", "0760"]
    with spawn_runner(args, socket_path=str(path)):
        st = os.stat(path)
        assert st.st_gid == os.getgid() and st.st_mode & 0o777 == 0o760


@pytest.mark.runtime
def test_an_unknown_socket_group_is_a_clear_error(tmp_path: Path) -> None:
    argv = [
        "run",
        "--listen",
        f"unix:{tmp_path}/r.sock",
        "--socket-group",
        "no-such-group-anywhere",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "--socket-group: no group named 'no-such-group-anywhere'" in result.stderr
