"""``--metrics``: exact counts scraped over HTTP after known calls (one process and
``--workers 2``), a SIGKILLed worker replaced without losing or doubling counts,
/healthz, histogram buckets, the reply-outcome reader on both codecs."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from inprocess import observed_runner
from processes import worker_pids
from prometheus_client.parser import text_string_to_metric_families

from a6runner import _observe
from a6runner._metrics import (
    HEALTH_STALE,
    WorkerReports,
    http_response,
    parse_metrics_address,
)
from a6runner._observe import DURATION_BUCKETS, Recorder, empty_snapshot, merge
from a6runner.testing import RunnerHandle, RunnerProcess, spawn_runner

PLUGINS = str(Path(__file__).with_name("metrics_plugins.py"))
WAIT = 20.0  # seconds to wait for what a worker reports every second

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- talking to the endpoint -----------------------------------------------------------------


def http_get(address: str, path: str, method: str = "GET") -> tuple[int, str]:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(address[len("unix:") :])
    else:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
    with sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: runner\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def scrape(address: str) -> Samples:
    status, text = http_get(address, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def family(samples: Samples, name: str, drop: str = "worker") -> dict[frozenset, float]:
    return {
        frozenset((k, v) for k, v in labels if k != drop): n
        for (sample, labels), n in samples.items()
        if sample == name and n
    }


def until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait for something the runner does by itself (a worker's report, a restart)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def metrics_address(runner: RunnerProcess) -> str:
    """The address the runner logged (port 0 becomes the port it got)."""
    found: list[str] = []

    def logged() -> bool:
        found[:] = re.findall(r"metrics on (\S+) \(/metrics", runner.log())
        return bool(found)

    until(logged, "the metrics log line")
    return found[0]


def frame(frame_type: int, payload: bytes) -> bytes:
    return struct.pack(">I", frame_type << 24 | len(payload)) + payload


# -- a known mix of calls --------------------------------------------------------------------


class Expected:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.plugin_errors: Counter[tuple[str, str]] = Counter()
        self.plugin_calls: Counter[tuple[str, str]] = Counter()
        self.extra_info: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


CONFS = {
    "say": ("say", {"body": "hi"}),
    "noop": ("noop", {}),
    "rewrite": ("proxy-rewrite", {"uri": "/new"}),
    "boom": ("boom", {}),
    "async-boom": ("async-boom", {}),
    "asks": ("asks", {}),
    "resp": ("response-rewrite", {"filters": [{"regex": "a", "scope": "global", "replace": "b"}]}),
}


def drive(runner: RunnerHandle, connections: int = 1) -> Expected:
    """Prepare every conf of CONFS once, then on each of ``connections`` connections one
    call of every kind and outcome; return what the metrics must say."""
    exp = Expected()
    with runner.client() as apisix:
        tokens = {key: apisix.prepare_conf([conf]) for key, conf in CONFS.items()}
        exp.calls["prepare_conf", "none"] += len(CONFS)
        # a PrepareConf and an HTTPReqCall that are not FlatBuffers: BAD_REQUEST
        for frame_type, kind in ((1, "prepare_conf"), (2, "http_req_call")):
            apisix.send_raw(frame(frame_type, b"\xff" * 8))
            assert apisix.read_frame()[0] == 0
            exp.calls[kind, "error"] += 1
            exp.errors["bad_request"] += 1
    for _ in range(connections):
        with runner.client() as apisix:
            assert apisix.http_req_call(tokens["say"]).action == "stop"
            assert apisix.http_req_call(tokens["noop"]).action == "none"
            assert apisix.http_req_call(tokens["rewrite"]).action == "rewrite"
            assert apisix.http_req_call(tokens["boom"]).error == "SERVICE_UNAVAILABLE"
            assert apisix.http_req_call(tokens["async-boom"]).error == "SERVICE_UNAVAILABLE"
            assert apisix.http_req_call(7).error == "CONF_TOKEN_NOT_FOUND"
            assert apisix.http_req_call(tokens["asks"], body="x").action == "none"
            assert apisix.http_resp_call(tokens["resp"], body="aaa").body == b"bbb"
            assert apisix.http_resp_call(tokens["noop"]).body is None
        exp.calls.update(
            {
                ("http_req_call", "stop"): 1,
                ("http_req_call", "none"): 2,
                ("http_req_call", "rewrite"): 1,
                ("http_req_call", "error"): 3,
                ("http_resp_call", "response"): 1,
                ("http_resp_call", "none"): 1,
            }
        )
        exp.errors.update({"service_unavailable": 2, "conf_token_not_found": 1})
        exp.plugin_errors.update({("boom", "request"): 1, ("async-boom", "request"): 1})
        exp.plugin_calls.update(
            {
                ("say", "request"): 1,
                ("noop", "request"): 1,
                ("proxy-rewrite", "request"): 1,
                ("boom", "request"): 1,
                ("async-boom", "request"): 1,
                ("asks", "request"): 1,
                ("response-rewrite", "response"): 1,
                ("noop", "response"): 1,
            }
        )
        exp.extra_info.update({"var": 1, "req_body": 1, "resp_body": 1})
    return exp


def calls_counted(address: str) -> float:
    return sum(family(scrape(address), "a6runner_calls_total").values())


def check_counts(samples: Samples, exp: Expected) -> None:
    def labelled(counter: Counter, *names: str) -> dict[frozenset, float]:
        out: dict[frozenset, float] = {}
        for key, n in counter.items():
            key = key if isinstance(key, tuple) else (key,)
            out[frozenset(zip(names, key, strict=True))] = float(n)
        return out

    assert family(samples, "a6runner_calls_total") == labelled(exp.calls, "type", "outcome")
    assert family(samples, "a6runner_call_errors_total") == labelled(exp.errors, "code")
    assert family(samples, "a6runner_plugin_errors_total") == labelled(
        exp.plugin_errors, "plugin", "phase"
    )
    assert family(samples, "a6runner_plugin_duration_seconds_count") == labelled(
        exp.plugin_calls, "plugin", "phase"
    )
    assert family(samples, "a6runner_extra_info_total") == labelled(exp.extra_info, "kind")
    by_type: Counter[str] = Counter()
    for (kind, _), n in exp.calls.items():
        by_type[kind] += n
    assert family(samples, "a6runner_call_duration_seconds_count") == labelled(by_type, "type")
    # every PrepareConf without a key made a token
    assert value(samples, "a6runner_conf_tokens") == exp.calls["prepare_conf", "none"]


# -- one process -------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["metrics", "metrics+debug"])
def test_in_process_counts_every_kind_and_outcome_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    """In this process (both kernel modes), and with debug logging on too (its connections
    and filter wrappers are others: the counts are the same)."""
    if debug:
        caplog.set_level(logging.DEBUG, logger="a6runner")
    address = f"unix:{tmp_path / 'metrics.sock'}"
    with observed_runner(tmp_path, metrics=address) as runner:
        exp = drive(runner, connections=2)
        samples = scrape(address)
    check_counts(samples, exp)
    assert any(getattr(r, "event", None) == "call" for r in caplog.records) == debug


@pytest.fixture
def single() -> Iterator[tuple[RunnerProcess, str]]:
    """A fresh runner for each test: they count from zero (in any order)."""
    with spawn_runner(["--plugins", PLUGINS, "--metrics", "127.0.0.1:0"]) as runner:
        yield runner, metrics_address(runner)


@pytest.mark.runtime
def test_one_process_counts_every_kind_and_outcome_exactly(single) -> None:
    runner, address = single
    before = scrape(address)
    assert family(before, "a6runner_calls_total") == {}  # nothing but zeros yet
    exp = drive(runner, connections=2)
    samples = scrape(address)  # one process: the numbers are current at once
    check_counts(samples, exp)
    assert value(samples, "a6runner_connections") == 0
    assert value(samples, "a6runner_worker_restarts_total") == 0
    assert value(samples, "process_resident_memory_bytes", worker="0") > 0
    assert value(samples, "process_open_fds", worker="0") > 0
    assert value(samples, "a6runner_event_loop_lag_seconds_count") >= 0
    with runner.client() as apisix:  # a connection held open is one
        apisix.prepare_conf([CONFS["say"]], key="k")
        assert value(scrape(address), "a6runner_connections") == 1


@pytest.mark.runtime
def test_a_50ms_plugin_lands_in_the_buckets_of_its_duration(single) -> None:
    runner, address = single
    with runner.client() as apisix:
        token = apisix.prepare_conf([("nap", {})])
        assert apisix.http_req_call(token).action == "none"
    samples = scrape(address)
    labels = {"plugin": "nap", "phase": "request"}
    took = value(samples, "a6runner_plugin_duration_seconds_sum", **labels)
    assert took >= 0.05  # it slept that long
    assert value(samples, "a6runner_plugin_duration_seconds_count", **labels) == 1
    for bound in DURATION_BUCKETS:
        le = repr(bound)
        expected = 1.0 if took <= bound else 0.0  # counted in every bucket at or above it
        assert value(samples, "a6runner_plugin_duration_seconds_bucket", le=le, **labels) == (
            expected
        ), le
    assert value(samples, "a6runner_plugin_duration_seconds_bucket", le="0.05", **labels) == 0
    assert value(samples, "a6runner_plugin_duration_seconds_bucket", le="+Inf", **labels) == 1


@pytest.mark.runtime
def test_one_process_counters_go_on_through_a_reload(single) -> None:
    runner, address = single
    stops = {"type": "http_req_call", "outcome": "stop"}
    say = {"plugin": "say", "phase": "request"}
    before = scrape(address)
    with runner.client() as apisix:
        token = apisix.prepare_conf([CONFS["say"]])
        for _ in range(3):
            assert apisix.http_req_call(token).action == "stop"
        os.kill(runner.process.pid, signal.SIGHUP)
        until(lambda: runner.log().count("reloaded: ") == 1, "the reload")
        for _ in range(4):  # the same token, its conf parsed again by the new plugin
            assert apisix.http_req_call(token).action == "stop"
    after = scrape(address)
    assert (
        value(after, "a6runner_calls_total", **stops)
        - value(before, "a6runner_calls_total", **stops)
        == 7
    )
    count = "a6runner_plugin_duration_seconds_count"
    assert value(after, count, **say) - value(before, count, **say) == 7  # the new one timed too


@pytest.mark.runtime
def test_healthz_head_and_unknown_paths(single) -> None:
    _, address = single
    assert http_get(address, "/healthz") == (200, "ok\n")
    assert http_get(address, "/healthz", "HEAD") == (200, "")
    assert http_get(address, "/other")[0] == 404
    assert http_get(address, "/metrics", "POST")[0] == 405


# -- --workers 2 ---------------------------------------------------------------------------------


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[RunnerProcess, str]]:
    address = f"unix:{tmp_path / 'metrics.sock'}"
    with spawn_runner(["--workers", "2", "--plugins", PLUGINS, "--metrics", address]) as runner:
        until(lambda: len(worker_pids(runner)) == 2, "two workers")
        yield runner, address


@pytest.mark.runtime
def test_two_workers_count_for_the_whole_runner_through_a_killed_worker_and_a_reload(
    workers,
) -> None:
    runner, address = workers
    until(lambda: http_get(address, "/healthz")[0] == 200, "both workers reporting")
    exp = drive(runner, connections=8)
    until(lambda: calls_counted(address) >= exp.total, "the workers' reports")
    samples = scrape(address)
    check_counts(samples, exp)
    # both workers served calls (each one's CPU shows), and the supervisor is there too
    assert {"supervisor", "0", "1"} <= {
        dict(labels)["worker"]
        for (name, labels), _ in samples.items()
        if name == "process_cpu_seconds_total"
    }

    victim = min(worker_pids(runner))
    os.kill(victim, signal.SIGKILL)
    until(lambda: victim not in worker_pids(runner) and len(worker_pids(runner)) == 2, "a new one")
    until(
        lambda: value(scrape(address), "a6runner_worker_restarts_total") == 1, "the restart count"
    )
    check_counts(scrape(address), exp)  # nothing lost, nothing doubled
    # and the new worker adds to them
    with runner.client() as apisix:
        token = apisix.prepare_conf([CONFS["say"]])
        for _ in range(5):
            assert apisix.http_req_call(token).action == "stop"
    exp.calls["prepare_conf", "none"] += 1
    exp.calls["http_req_call", "stop"] += 5
    exp.plugin_calls["say", "request"] += 5
    until(lambda: calls_counted(address) >= exp.total, "the reports after the restart")
    check_counts(scrape(address), exp)

    # a reload replaces both workers, one by one: what they counted stays, once
    before = worker_pids(runner)
    os.kill(runner.process.pid, signal.SIGHUP)
    until(lambda: "reload done: every worker serves the new plugins" in runner.log(), "reload")
    until(lambda: not worker_pids(runner) & before, "the old workers gone")
    samples = scrape(address)
    check_counts(samples, exp)
    assert value(samples, "a6runner_worker_restarts_total") == 1  # a reload is no restart
    with runner.client() as apisix:
        for _ in range(3):
            assert apisix.http_req_call(token).action == "stop"
    exp.calls["http_req_call", "stop"] += 3
    exp.plugin_calls["say", "request"] += 3
    until(lambda: calls_counted(address) >= exp.total, "the reports after the reload")
    check_counts(scrape(address), exp)


@pytest.mark.runtime
def test_healthz_is_503_while_no_worker_is_alive(workers) -> None:
    runner, address = workers
    until(lambda: http_get(address, "/healthz") == (200, "ok: 2 of 2 workers alive\n"), "200")
    pids = worker_pids(runner)
    for pid in pids:  # stopped: neither dead (nothing replaces them) nor serving
        os.kill(pid, signal.SIGSTOP)
    try:
        until(lambda: http_get(address, "/healthz")[0] == 503, "503", HEALTH_STALE + WAIT)
        assert http_get(address, "/healthz")[1] == "no worker alive (0 of 2)\n"
        assert scrape(address)  # /metrics still answers, from the last reports
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    until(lambda: http_get(address, "/healthz")[0] == 200, "200 again")


# -- startup errors ------------------------------------------------------------------------------


@pytest.mark.runtime
def test_metrics_without_prometheus_client_is_a_clear_startup_error(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['prometheus_client'] = None; "
    run = "from a6runner._cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", hide + run, "run", "--metrics", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "APISIX_LISTEN_ADDRESS": f"unix:{tmp_path / 'r.sock'}"},
    )
    assert result.returncode == 1
    assert "--metrics needs the prometheus-client package" in result.stderr
    assert "a6runner[metrics]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.sock").exists()


@pytest.mark.runtime
def test_a_bad_metrics_address_is_refused_by_the_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", "run", "--metrics", "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr and "unix:/path" in result.stderr


def test_metrics_addresses() -> None:
    assert str(parse_metrics_address("127.0.0.1:9091")) == "127.0.0.1:9091"
    assert str(parse_metrics_address("[::1]:9091")) == "[::1]:9091"
    assert str(parse_metrics_address("unix:/run/m.sock")) == "unix:/run/m.sock"
    for bad in ("9091", ":9091", "host:", "host:99999", "unix:", "host:x"):
        with pytest.raises(Exception, match="--metrics"):
            parse_metrics_address(bad)


# -- the pieces --------------------------------------------------------------------------------


def test_the_prepared_token_of_a_debug_line(codec: ModuleType) -> None:
    assert _observe.prepared_token(codec.build_prepare_conf_resp(123456)) == 123456


def test_worker_reports_keep_what_exited_workers_counted() -> None:
    now = [100.0]
    reports = WorkerReports(clock=lambda: now[0])

    def snapshot(calls: int, connections: int) -> dict:
        snap = empty_snapshot()
        snap["calls"]["http_req_call", "stop"] = calls
        snap["gauges"] = {"connections": connections, "buffered_bytes": 10}
        return snap

    reports.report(1, snapshot(5, 2))
    reports.report(2, snapshot(3, 1))
    counters, gauges = reports.totals()
    assert counters["calls"]["http_req_call", "stop"] == 8
    assert gauges == {"connections": 3, "buffered_bytes": 20}
    reports.report(1, snapshot(7, 2))  # reports are cumulative: the last one counts
    reports.worker_exited(1, died=True)
    reports.report(3, snapshot(1, 0))  # its replacement starts from zero
    counters, gauges = reports.totals()
    assert counters["calls"]["http_req_call", "stop"] == 11
    assert gauges["connections"] == 1
    assert reports.restarts == 1
    assert reports.alive([2, 3, 1]) == 2
    now[0] += HEALTH_STALE + 1
    reports.report(3, snapshot(1, 0))
    assert reports.alive([2, 3]) == 1
    reports.worker_exited(9, died=False)  # never reported: nothing to keep
    assert reports.restarts == 1


def test_process_metrics_label_each_live_worker_apart_during_a_reload(tmp_path: Path) -> None:
    from a6runner._reload import PluginLoader
    from a6runner._settings import Settings
    from a6runner._workers import Supervisor, _Channel

    supervisor = Supervisor(Settings(str(tmp_path / "s")), {}, PluginLoader())
    for pid, index, generation in ((10, 0, 0), (11, 1, 0), (12, 0, 1), (13, 0, 2)):
        supervisor.channels[pid] = _Channel(index, socket.socket(), pid, generation)
    try:
        labels = dict(supervisor._worker_labels())
    finally:
        for channel in supervisor.channels.values():
            channel.sock.close()
    assert labels == {"0": 13, "0-old": 12, "0-old-10": 10, "1": 11}


def test_merge_adds_histograms() -> None:
    a = Recorder()
    a.counts.duration(2).observe(0.001)
    a.plugin("p", "request").hist.observe(0.2)
    total = merge(merge(empty_snapshot(), a.snapshot()), a.snapshot())
    counts, seconds = total["plugin_duration"]["p", "request"]
    assert sum(counts) == 2 and seconds == pytest.approx(0.4)
    assert sum(total["call_duration"]["http_req_call"][0]) == 2
    assert sum(total["loop_lag"][0]) == 0


def test_http_requests_that_are_not_http() -> None:
    def metrics() -> bytes:
        return b"m"

    def health() -> tuple[bool, str]:
        return False, "down"

    assert http_response(b"junk\r\n\r\n", metrics, health).startswith(b"HTTP/1.0 400")
    assert http_response(b"GET /healthz HTTP/1.1\r\n\r\n", metrics, health).startswith(
        b"HTTP/1.0 503"
    )
    assert http_response(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", metrics, health).endswith(b"m")
