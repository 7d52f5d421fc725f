"""The testing kit itself: what its helpers leave behind, how it starts other runners, and
how it counts ExtraInfo round trips."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a6runner import Plugin, Request
from a6runner._kernels import codec
from a6runner.testing import (
    AsyncClient,
    CallData,
    Client,
    ClientProtocol,
    Reply,
    run_runner,
    spawn_runner,
)


def test_run_runner_removes_its_folder() -> None:
    with run_runner() as runner:
        folder = os.path.dirname(runner.socket_path)
        assert os.path.basename(folder).startswith("a6runner-")
        assert os.path.exists(runner.socket_path)
    assert not os.path.exists(folder)


def test_spawn_runner_removes_socket_log_and_folder() -> None:
    with spawn_runner() as runner:
        folder = os.path.dirname(runner.socket_path)
        assert os.path.exists(runner.log_path)
        runner.process.send_signal(signal.SIGKILL)  # no chance to remove its socket
        runner.process.wait(5)
        assert os.path.exists(runner.socket_path)
    assert not os.path.exists(folder)


def test_spawn_runner_with_a_given_path_removes_what_it_created(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    with spawn_runner(socket_path=str(path)) as runner:
        assert runner.log_path == f"{path}.log"
        runner.process.send_signal(signal.SIGKILL)
        runner.process.wait(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_spawn_runner_starts_any_command_with_apisix_environment() -> None:
    """``command=``: another runner (here ``python -m a6runner run``, spelled out, with an
    extra argument) gets APISIX_LISTEN_ADDRESS and APISIX_CONF_EXPIRE_TIME as APISIX sets
    them (whole seconds without a fraction, as the Go runner parses them)."""
    command = [sys.executable, "-m", "a6runner", "run"]
    with spawn_runner(["--no-entry-points"], command=command, conf_expire_time=3600) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("say", {"body": "hi"})])
            assert apisix.http_req_call(token).body == b"hi"
        environ = Path(f"/proc/{runner.process.pid}/environ").read_bytes().split(b"\0")
        assert f"APISIX_LISTEN_ADDRESS=unix:{runner.socket_path}".encode() in environ
        assert b"APISIX_CONF_EXPIRE_TIME=3600" in environ
        cmdline = Path(f"/proc/{runner.process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--no-entry-points" in cmdline
        assert runner.stop() == 0


# -- round trips: how many times the client answered ExtraInfo questions during a call ------


class ThreeVarsAndBody(Plugin):
    """Awaits three vars, then the request body, one at a time (as a6runner asks today)."""

    name = "three-vars-and-body"

    async def request_filter(self, conf: Any, req: Request) -> None:
        values = [await req.var(n) for n in ("a", "b", "c")]
        body = await req.body()
        req.respond(200, json.dumps({"vars": values, "body_len": len(body)}))


def test_a_runner_asking_one_question_at_a_time_costs_one_round_trip_each() -> None:
    with run_runner(plugins=[ThreeVarsAndBody], bundled=True) as runner, runner.client() as apisix:
        token = apisix.prepare_conf([("three-vars-and-body", {})])
        reply = apisix.http_req_call(token, vars={"a": "1", "c": "3"}, body=b"xyz")
        assert json.loads(reply.body or b"") == {"vars": ["1", None, "3"], "body_len": 3}
        assert reply.asked == [("var", "a"), ("var", "b"), ("var", "c"), ("req_body", None)]
        assert reply.round_trips == 4
        plain = apisix.http_req_call(apisix.prepare_conf([("say", {"body": "x"})]))
        assert (plain.asked, plain.round_trips) == ([], 0)


BIG_BODY = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit


class PipeliningRunner:
    """A fake runner that sends every question of a call in one write, then reads the
    answers in order and reports them: var a, var b (APISIX has none), var c, the request
    body. Answers a Stop whose body says what it received, question by question."""

    QUESTIONS = (
        codec.build_extra_info_req(codec.INFO_VAR, "a")
        + codec.build_extra_info_req(codec.INFO_VAR, "b")
        + codec.build_extra_info_req(codec.INFO_VAR, "c")
        + codec.build_extra_info_req(codec.INFO_REQ_BODY)
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                splitter = codec.FrameSplitter()
                frames: list[tuple[int, bytes]] = []

                def frame() -> tuple[int, bytes]:
                    while not frames:
                        data = conn.recv(1 << 20)
                        if not data:
                            raise ConnectionError("client went away")
                        frames.extend(splitter.feed(data))
                    return frames.pop(0)

                while True:
                    frame_type, payload = frame()
                    if frame_type == codec.RPC_PREPARE_CONF:
                        conn.sendall(codec.build_prepare_conf_resp(1))
                        continue
                    call_id = codec.decode_http_req_call_req(payload).id
                    conn.sendall(self.QUESTIONS)  # one write: one round trip
                    got = []
                    for _ in range(4):
                        answer_type, answer = frame()
                        assert answer_type == codec.RPC_EXTRA_INFO
                        value = codec.decode_extra_info_resp(answer)
                        got.append(
                            None
                            if value is None
                            else value.decode()
                            if len(value) < 100
                            else hashlib.sha256(value).hexdigest()
                        )
                    conn.sendall(codec.build_stop(call_id, 200, [], json.dumps(got).encode()))

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def pipelining(tmp_path: Path) -> Iterator[PipeliningRunner]:
    fake = PipeliningRunner(str(tmp_path / "fake.sock"))
    yield fake
    fake.close()


PIPELINED_ANSWERS = ["1", None, "3", hashlib.sha256(BIG_BODY).hexdigest()]
PIPELINED_ASKED = [("var", "a"), ("var", "b"), ("var", "c"), ("req_body", None)]


def test_questions_sent_at_once_cost_one_round_trip(pipelining: PipeliningRunner) -> None:
    with Client(pipelining.path) as apisix:
        token = apisix.prepare_conf([("any", {})])
        reply = apisix.http_req_call(token, vars={"a": "1", "c": "3"}, body=BIG_BODY)
        # every answer reached the runner in the order of its question, the missing var too
        assert json.loads(reply.body or b"") == PIPELINED_ANSWERS
        assert reply.asked == PIPELINED_ASKED
        assert reply.round_trips == 1


def test_async_client_counts_round_trips_the_same_way(pipelining: PipeliningRunner) -> None:
    async def main() -> Reply:
        async with await AsyncClient.connect(pipelining.path) as apisix:
            token = await apisix.prepare_conf([("any", {})])
            return await apisix.http_req_call(token, vars={"a": "1", "c": "3"}, body=BIG_BODY)

    reply = asyncio.run(main())
    assert json.loads(reply.body or b"") == PIPELINED_ANSWERS
    assert (reply.asked, reply.round_trips) == (PIPELINED_ASKED, 1)


def test_protocol_core_answers_what_each_read_completed() -> None:
    """Without I/O: questions completed by one read are answered together, in order; a
    question cut across reads is answered with the read that completes it."""
    core = ClientProtocol()
    frame = core.http_req_call_frame(core.next_id(), 7, "GET", "/", (), None, None)
    data = CallData({"a": "1", "b": b"2"}, b"body", None)
    assert core.start_call(frame, data) == frame
    q_a = codec.build_extra_info_req(codec.INFO_VAR, "a")
    q_b = codec.build_extra_info_req(codec.INFO_VAR, "b")
    q_body = codec.build_extra_info_req(codec.INFO_REQ_BODY)
    answers, reply = core.receive(q_a + q_b + q_body[:3])
    assert reply is None
    assert answers == codec.build_extra_info_resp(b"1") + codec.build_extra_info_resp(b"2")
    assert core.receive(b"") == (b"", None)  # nothing new: nothing to write
    answers, reply = core.receive(q_body[3:])
    assert (answers, reply) == (codec.build_extra_info_resp(b"body"), None)
    leftover = codec.build_prepare_conf_resp(9)
    answers, reply = core.receive(codec.build_stop(0, 200, [], b"ok") + leftover)
    assert answers == b"" and reply is not None
    assert (reply.action, reply.body, reply.round_trips) == ("stop", b"ok", 2)
    assert reply.asked == [("var", "a"), ("var", "b"), ("req_body", None)]
    assert core.next_frame() == (codec.RPC_PREPARE_CONF, leftover[4:])  # kept for later
    assert core.next_frame() is None
