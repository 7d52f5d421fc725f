"""The end-to-end load driver (``a6-runner bench``): functional checks, no timing.

Each scenario runs for about a second against a spawned runner; a small fake runner that
answers like the Go runner (HTTPRespCall status 200, RespBody fetched through ExtraInfo)
checks the driver's own paths, and a faulty one checks that wrong reply ids are caught.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from a6runner import bench as lg
from a6runner._kernels import codec as kcodec
from a6runner.testing import RunnerProcess, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject


def _cfg(sock: str, scenario: str, conns: int = 4) -> lg.DriverConfig:
    sc = lg.SCENARIOS[scenario]
    return lg.DriverConfig(sock, sc, conns, sc.plugin, sc.conf, sc.expect)


def drive_until(
    cfg: lg.DriverConfig,
    seen: Callable[[lg.DriverResult], bool],
    warmup_s: float = 0.2,
    duration_s: float = 0.8,
    **kwargs: int,
) -> lg.DriverResult:
    """A busy machine may leave a short window (almost) no calls: drive again, up to 20
    windows, until one shows what the test checks. Returns the last result."""
    for _ in range(20):
        res = lg.drive(cfg, warmup_s, duration_s, **kwargs)
        if seen(res):
            break
    return res


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerProcess]:
    # the bench plugins for the prefetch scenarios, beside the bundled ones
    with spawn_runner(["--plugins", "a6runner.bench.plugins"], conf_expire_time=3600) as handle:
        yield handle
        handle.stop()


@pytest.mark.parametrize("scenario", sorted(lg.SCENARIOS))
def test_scenario_against_runner(runner: RunnerProcess, scenario: str) -> None:
    res = drive_until(_cfg(runner.socket_path, scenario), lambda r: r.calls > 0)
    assert res.errors == 0, (res.counts, res.messages)
    assert res.calls > 0
    assert sum(res.hist.values()) == res.calls
    assert res.rps > 0 and res.elapsed_s > 0
    sc = lg.SCENARIOS[scenario]
    asks, trips = sc.asks, sc.expected_round_trips
    # a call in flight when the warm-up ended may have asked before the counters were reset
    assert res.calls * asks - 4 * asks <= res.extra <= res.calls * asks + 4 * asks
    # one round trip per question, but one for all of a prefetch
    assert res.round_trips * asks == res.extra * trips


def test_procs_split_connections(runner: RunnerProcess) -> None:
    res = drive_until(_cfg(runner.socket_path, "say", conns=5), lambda r: r.calls > 0, procs=2)
    assert res.conns == 5
    assert res.errors == 0, (res.counts, res.messages)
    assert res.calls > 0 and sum(res.hist.values()) == res.calls


# -- a fake runner -----------------------------------------------------------------------------


class FakeRunner:
    """Answers like the Go runner. ``wrong_id_every=N``: every Nth call gets id + 1."""

    def __init__(self, wrong_id_every: int = 0) -> None:
        self.wrong_id_every = wrong_id_every
        self.path = os.path.join(tempfile.mkdtemp(prefix="a6fake-"), "fake.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.calls = 0
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        splitter = kcodec.FrameSplitter()
        pending: list[tuple[int, bytes]] = []

        def frame() -> tuple[int, bytes] | None:
            while not pending:
                data = conn.recv(65536)
                if not data:
                    return None
                pending.extend(splitter.feed(data))
            return pending.pop(0)

        with conn, contextlib.suppress(OSError):  # the driver closes when done
            while (f := frame()) is not None:
                typ, payload = f
                if typ == kcodec.RPC_PREPARE_CONF:
                    conn.sendall(kcodec.build_prepare_conf_resp(7))
                    continue
                with self.lock:
                    self.calls += 1
                    wrong = self.wrong_id_every and self.calls % self.wrong_id_every == 0
                if typ == kcodec.RPC_HTTP_REQ_CALL:
                    call_id = kcodec.decode_http_req_call_req(payload).id
                    reply = kcodec.build_stop(call_id + wrong, 200, [("X-Fake", "1")], b"hello")
                    conn.sendall(reply)
                elif typ == kcodec.RPC_HTTP_RESP_CALL:
                    call_id = kcodec.decode_http_resp_call_req(payload).id
                    conn.sendall(kcodec.build_extra_info_req(kcodec.INFO_RESP_BODY))
                    answer = frame()
                    if answer is None:
                        return
                    body = kcodec.decode_extra_info_resp(answer[1]) or b""
                    new_body = body.replace(b"hello", b"HELLO")
                    conn.sendall(
                        kcodec.build_http_resp_call_resp(
                            call_id + wrong, 200, [("X-A", "b")], new_body
                        )
                    )
                else:
                    conn.sendall(kcodec.build_err_resp(kcodec.ERR_BAD_REQUEST))

    def close(self) -> None:
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(os.path.dirname(self.path))


@pytest.fixture
def fake() -> Iterator[FakeRunner]:
    f = FakeRunner()
    yield f
    f.close()


@pytest.fixture
def faulty() -> Iterator[FakeRunner]:
    f = FakeRunner(wrong_id_every=3)
    yield f
    f.close()


@pytest.mark.parametrize("scenario", ["resp-rewrite", "resp-filter-body"])
def test_response_scenarios_against_go_like_runner(fake: FakeRunner, scenario: str) -> None:
    res = drive_until(_cfg(fake.path, scenario, conns=3), lambda r: r.calls > 0)
    assert res.errors == 0, (res.counts, res.messages)
    assert res.calls > 0
    # every call fetched the body through ExtraInfo (a call in flight when the warm-up
    # ended may have asked before the counters were reset)
    assert res.extra >= res.calls - 3


def test_answers_larger_than_the_socket_buffer(fake: FakeRunner) -> None:
    """A 2 MiB response body answer takes many short writes (the rest goes out when the
    socket is writable again) and its 2 MiB reply many reads."""
    cfg = _cfg(fake.path, "resp-filter-body", conns=2)
    cfg.resp_body_size = 2 << 20
    res = lg.drive(cfg, 0.2, 0.8)
    assert res.errors == 0, (res.counts, res.messages)
    assert res.calls > 0 and res.extra >= res.calls - 2


def test_wrong_reply_id_is_an_error(faulty: FakeRunner) -> None:
    res = drive_until(_cfg(faulty.path, "say", conns=2), lambda r: r.counts["bad_id"] > 0)
    # good and bad replies alternate on every connection, so the fast path (which takes
    # replies that match a reply already validated) has been armed when wrong ids come
    assert res.calls > 0
    assert res.counts["bad_id"] > 0
    assert res.errors == res.counts["bad_id"]
    assert any("reply id" in m for m in res.messages)


def test_wrong_reply_id_is_an_error_for_responses(faulty: FakeRunner) -> None:
    cfg = _cfg(faulty.path, "resp-filter-body", conns=2)
    res = drive_until(cfg, lambda r: r.counts["bad_id"] > 0)
    assert res.calls > 0
    assert res.counts["bad_id"] > 0 and res.errors == res.counts["bad_id"]


def test_no_id_check_accepts_any_id(faulty: FakeRunner) -> None:
    cfg = _cfg(faulty.path, "say", conns=2)
    cfg.check_id = False
    res = drive_until(cfg, lambda r: r.calls > 0)
    assert res.calls > 0 and res.errors == 0


def test_closed_connection_is_an_error_and_reconnects() -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="a6close-"), "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)

    def serve() -> None:  # answers PrepareConf, then closes on the first call
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                if conn.recv(65536):
                    conn.sendall(kcodec.build_prepare_conf_resp(1))
                conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    try:
        res = drive_until(_cfg(path, "say", conns=1), lambda r: r.counts["reconnects"] > 0, 0, 0.5)
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    assert res.calls == 0
    assert res.counts["conn_closed"] > 0 and res.counts["reconnects"] > 0
    assert res.errors == res.counts["conn_closed"]


# -- command line ------------------------------------------------------------------------------


def test_cli_starts_measures_and_stops_the_runner(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--scenario", "noop", "--conns", "2", "--duration", "0.6", "--warmup", "0.2"]
    argv += ["--json", "--", sys.executable, "-m", "a6runner", "run"]
    for _ in range(5):  # a busy machine may leave the short window no calls: measure again
        assert lg.main(argv) == 0
        rep = json.loads(capsys.readouterr().out)
        if rep["calls"] > 0:
            break
    assert rep["scenario"] == "noop" and rep["errors"] == 0 and rep["calls"] > 0
    assert rep["runner_alive"] is True and rep["runner_exit"] == 0
    assert rep["runner_cpu_us_per_call"] is not None and rep["runner_rss_kb"] > 0
    assert rep["p50_us"] <= rep["p99_us"] <= rep["max_us"] + 0.1


def test_cli_text_report_against_socket(
    fake: FakeRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    from a6runner._cli import main as cli_main

    argv = ["bench", "--sock", fake.path, "--scenario", "say", "--conns", "2"]
    assert cli_main([*argv, "--duration", "0.4", "--warmup", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "RESULT runner=- scenario=say conns=2" in out and " errors=0 " in out


def test_cli_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert lg.main(["--scenario", "say"]) == 2
    assert "either --sock" in capsys.readouterr().err


# -- statistics ----------------------------------------------------------------------------------


def test_histogram_percentiles_and_merge() -> None:
    lat = [1_000 * i for i in range(1, 101)]  # 1..100 us
    hist = lg.histogram(lat)
    assert lg.percentile_us(hist, 0.5) == pytest.approx(51.05)
    assert lg.percentile_us(hist, 0.99) == pytest.approx(100.05)
    slow = lg.histogram([300_000_000])  # 300 ms: the coarse buckets
    assert lg.percentile_us(slow, 0.5) == pytest.approx(300_050.0)
    a = lg.DriverResult(calls=100, hist=hist, rps=10.0, lat_max_ns=100_000)
    b = lg.DriverResult(calls=1, hist=slow, rps=1.0, lat_max_ns=300_000_000)
    m = lg.merge([a, b])
    assert m.calls == 101 and m.rps == 11.0 and m.lat_max_ns == 300_000_000
    assert sum(m.hist.values()) == 101
    assert lg.DriverResult.from_json(json.loads(json.dumps(m.to_json()))).hist == m.hist


def test_scenarios_match_a6load() -> None:
    # the same plugin names and confs as /work/shared/tools/a6load.c
    in_a6load = {n: s for n, s in lg.SCENARIOS.items() if s.in_a6load}
    assert {n: (s.plugin, json.loads(s.conf)) for n, s in in_a6load.items()} == {
        "say": ("say", {"body": "hello"}),
        "rewrite-headers": (
            "request-body-rewrite",
            {"new_body": '{"rewritten":true,"by":"a6load"}'},
        ),
        "resp-rewrite": ("response-rewrite", {"status": 200, "headers": {"X-A": "b"}, "body": "x"}),
        "resp-filter-body": (
            "response-rewrite",
            {
                "status": 200,
                "headers": {"X-A": "b"},
                "filters": [{"regex": "hello", "scope": "global", "replace": "HELLO"}],
            },
        ),
        "noop": ("a6load-no-such-plugin", {}),
    }
    assert len(lg.REQ_ARGS) == 3 and len(lg.REQ_HEADERS) == 13 and len(lg.RESP_HEADERS) == 8
    assert len(lg.resp_body(4096)) == 4096


# -- ExtraInfo: answers by var name, several questions of one read in one write --------------


class PipeliningFake:
    """Answers each HTTPReqCall after asking 3 vars in one write; the call fails with
    BAD_REQUEST unless the 3 answers came back in order, with the scenario's value for
    content_type and the driver's default for the others."""

    QUESTIONS = b"".join(
        kcodec.build_extra_info_req(kcodec.INFO_VAR, n) for n in ("content_type", "a", "b")
    )
    EXPECTED = [b"application/json; charset=utf-8", lg.EXTRA_VAR, lg.EXTRA_VAR]

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        splitter = kcodec.FrameSplitter()
        pending: list[tuple[int, bytes]] = []

        def frame() -> tuple[int, bytes]:
            while not pending:
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError
                pending.extend(splitter.feed(data))
            return pending.pop(0)

        with conn, contextlib.suppress(OSError):
            while True:
                typ, payload = frame()
                if typ == kcodec.RPC_PREPARE_CONF:
                    conn.sendall(kcodec.build_prepare_conf_resp(7))
                    continue
                call_id = kcodec.decode_http_req_call_req(payload).id
                conn.sendall(self.QUESTIONS)
                got = [kcodec.decode_extra_info_resp(frame()[1]) for _ in range(3)]
                if got == self.EXPECTED:
                    conn.sendall(kcodec.build_http_req_call_resp(call_id))
                else:
                    conn.sendall(kcodec.build_err_resp(kcodec.ERR_BAD_REQUEST))

    def close(self) -> None:
        self.listener.close()


def test_questions_of_one_read_are_answered_in_one_round_trip(tmp_path: Path) -> None:
    fake = PipeliningFake(str(tmp_path / "fake.sock"))
    try:
        res = lg.drive(_cfg(fake.path, "request-validation", conns=2), 0.2, 0.8)
    finally:
        fake.close()
    assert res.errors == 0, (res.counts, res.messages)
    assert res.calls > 0
    # 3 questions per call in one round trip (give or take the calls in flight when the
    # warm-up ended)
    assert res.calls - 2 <= res.round_trips <= res.calls + 2
    assert res.extra == 3 * res.round_trips


# -- the progress line -----------------------------------------------------------------------


def test_progress_line_format() -> None:
    from a6runner.bench.cli import format_progress
    from a6runner.bench.driver import Progress

    warming = format_progress(Progress(None, 0, 0), 1.2, 2.0, 8.0)
    assert warming == "a6-runner bench: warming up 1/2 s"
    measuring = format_progress(Progress(2.0, 300_000, 3), 4.0, 2.0, 8.0)
    assert measuring == "a6-runner bench: 2.0/8 s  150,000 calls/s  300,000 calls  3 errors"
    # the last update may come a little after the end: never past the duration
    assert format_progress(Progress(8.01, 10, 0), 10.0, 2.0, 8.0).startswith(
        "a6-runner bench: 8.0/8 s"
    )


def test_bench_is_quiet_when_piped(fake: FakeRunner, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sock", fake.path, "--scenario", "say", "--conns", "1"]
    assert lg.main([*argv, "--duration", "0.3", "--warmup", "0.1"]) == 0
    captured = capsys.readouterr()
    assert "RESULT" in captured.out
    assert captured.err == ""


def test_bench_shows_progress_on_a_terminal(fake: FakeRunner) -> None:
    """stderr on a pseudo-terminal: the progress line is drawn (at least its final state,
    whatever the timing) and erased; stdout, a pipe, gets the report only."""
    import pty

    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "a6runner", "bench", "--sock", fake.path, "--conns", "1"]
    try:
        process = subprocess.Popen(
            [*argv, "--duration", "0.3", "--warmup", "0.1"],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=30)
    finally:
        os.close(master)
    assert process.returncode == 0
    assert b"\r" in shown and b" calls/s  " in shown and b" errors" in shown
    assert shown.endswith(b"\r")  # erased: the report is not mixed with it
    assert b"calls/s" in out and b"\r" not in out
