"""Plugin.start() and Plugin.stop(): where and when they run (one process, ``--workers 2``,
run_runner), a start that raises (startup: exit status 2 and one line; reload: the previous
plugins keep serving; a replacement worker: retried with a backoff), stop after the calls
in flight, stop bounded. Each hook writes an event line (tests/lifecycle_plugins.py);
every wait observes an event, nothing depends on timing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import WAIT, wait_for_log, wait_until, worker_pids

from a6runner import Plugin
from a6runner._kernels import codec
from a6runner._lifecycle import PluginLifecycle, PluginStartError
from a6runner.testing import RunnerProcess, decode_reply, run_runner, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

PLUGINS = str(Path(__file__).with_name("lifecycle_plugins.py"))
BAD_STOPS = str(Path(__file__).with_name("lifecycle_bad_stops.py"))
NAMES = ("async-hooks", "counted-start", "failing-start", "slow-start", "sync-hooks")  # in order


class Events:
    """The event lines the plugins' hooks wrote (tests/lifecycle_plugins.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[tuple[int, str, int, str]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            pid, name, instance, event = line.split()
            rows.append((int(pid), name, int(instance), event))
        return rows

    def of(self, name: str, event: str) -> list[tuple[int, int]]:
        """(pid, instance) of each ``event`` of plugin ``name``, in order."""
        return [(p, i) for p, n, i, e in self.read() if n == name and e == event]

    def wait(self, name: str, event: str, count: int = 1) -> list[tuple[int, int]]:
        wait_until(lambda: len(self.of(name, event)) >= count, f"{count} x {name} {event}")
        return self.of(name, event)


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Events:
    path = tmp_path / "events"
    monkeypatch.setenv("A6_LIFECYCLE_EVENTS", str(path))
    monkeypatch.setenv("A6_LIFECYCLE_FAIL", str(tmp_path / "fail"))
    monkeypatch.setenv("A6_LIFECYCLE_GATE", str(tmp_path / "gate"))
    monkeypatch.setenv("A6_LIFECYCLE_EXIT", str(tmp_path / "exit"))
    return Events(path)


def runner_args(workers: int = 1, *more: str) -> list[str]:
    """The lifecycle plugins only (started in the order of their class names, NAMES)."""
    args = ["--no-bundled", "--no-entry-points", "--plugins", PLUGINS, *more]
    return (["--workers", str(workers)] if workers > 1 else []) + args


def answer(runner: RunnerProcess, name: str, conf: dict[str, Any] | None = None) -> str:
    with runner.client(timeout=WAIT) as apisix:
        reply = apisix.http_req_call(apisix.prepare_conf([(name, conf or {})]))
        assert reply.action == "stop", reply
        return (reply.body or b"").decode()


# -- where and when: one process, workers, run_runner --------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_start_runs_in_each_serving_process_before_its_first_call_and_stop_at_shutdown(
    events: Events, workers: int, tmp_path: Path
) -> None:
    (tmp_path / "gate").touch()  # slow-start starts at once here
    with spawn_runner(runner_args(workers, "--plugins", BAD_STOPS)) as runner:
        wait_for_log(runner, "listening on")
        serving = worker_pids(runner) if workers > 1 else {runner.process.pid}
        for name in NAMES:
            events.wait(name, "start", count=workers)
        assert {p for p, _ in events.of("sync-hooks", "start")} == serving
        assert {p for p, _ in events.of("async-hooks", "start")} == serving
        for _ in range(4):  # every call, on whichever process, sees its instance started
            assert answer(runner, "sync-hooks").startswith("started=True")
            assert answer(runner, "async-hooks").startswith("started=True")
        assert events.of("sync-hooks", "stop") == []
        assert runner.stop(WAIT) == 0
        log = runner.log()
    for name in NAMES:
        # each started instance stopped once, in the process that started it
        assert sorted(events.of(name, "stop")) == sorted(events.of(name, "start"))
    if workers > 1:  # the supervisor, which serves nothing, runs no hook
        assert runner.process.pid not in {p for p, *_ in events.read()}
    # the bad stops: one hung (left behind), one raised; the shutdown went on
    assert "plugin 'hanging-stop' stop did not finish within 0.1s: left behind" in log
    assert "plugin 'raising-stop' stop raised RuntimeError: the pool was already closed" in log


def test_run_runner_starts_the_plugins_before_it_is_ready_and_stops_them_after() -> None:
    seen: list[str] = []

    class Pool(Plugin):
        name = "pool"

        async def start(self) -> None:
            await asyncio.sleep(0)
            seen.append("start")

        def stop(self) -> None:
            seen.append("stop")

        def request_filter(self, conf: Any, req: Any) -> None:
            req.respond(200, ",".join(seen))

    with run_runner(plugins=[Pool]) as runner, runner.client() as apisix:
        assert seen == ["start"]
        token = apisix.prepare_conf([("pool", {})])
        assert apisix.http_req_call(token).body == b"start"
    assert seen == ["start", "stop"]


def test_run_runner_raises_when_a_start_raises_and_stops_those_started() -> None:
    seen: list[str] = []

    class First(Plugin):
        name = "first"

        def start(self) -> None:
            seen.append("first start")

        async def stop(self) -> None:
            seen.append("first stop")

    class Broken(Plugin):
        name = "broken"

        async def start(self) -> None:
            raise SystemExit("a library called sys.exit()")

        def stop(self) -> None:
            seen.append("broken stop")  # never: it did not start

    failed = pytest.raises(PluginStartError, match=r"plugin 'broken' start raised SystemExit: a")
    with failed, run_runner(plugins=[First, Broken]):
        pass
    assert seen == ["first start", "first stop"]


# -- a start that raises ---------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_start_that_raises_stops_the_runner_with_status_2_and_one_line(
    events: Events, tmp_path: Path, workers: int
) -> None:
    (tmp_path / "fail").touch()
    (tmp_path / "gate").touch()
    sock = tmp_path / "r.sock"
    env = {**os.environ, "APISIX_LISTEN_ADDRESS": f"unix:{sock}"}
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", "run", *runner_args(workers)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2, result.stderr
    failures = [line for line in result.stderr.splitlines() if "start raised" in line]
    assert len(failures) == 1, result.stderr
    assert (
        "plugin 'failing-start' start raised ValueError: the token service at 127.0.0.1:1 "
        "refused the connection: the runner stops (exit status 2)" in failures[0]
    )
    assert "Traceback" not in result.stderr
    assert not sock.exists()
    # never respawned: each worker tried at most once; whatever had started was stopped
    assert result.stderr.count("started (pid") == (workers if workers > 1 else 0)
    assert 1 <= len(events.of("failing-start", "start-failed")) <= workers
    assert events.of("async-hooks", "start")  # (it starts first)
    assert sorted(events.of("async-hooks", "stop")) == sorted(events.of("async-hooks", "start"))
    assert events.of("sync-hooks", "start") == []  # after the one that failed: never


def test_sigterm_during_a_slow_start_stops_at_once(events: Events) -> None:
    with spawn_runner(runner_args()) as runner:
        events.wait("slow-start", "start-entered")
        assert runner.stop(WAIT) == 0
    assert events.of("slow-start", "start") == []  # cancelled: it never finished
    assert events.of("slow-start", "stop") == []  # and is not stopped
    for name in ("async-hooks", "failing-start"):  # those that started before it are
        assert events.of(name, "stop") == events.of(name, "start") != []
    assert events.of("sync-hooks", "start") == []


# -- reloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reload_whose_start_raises_keeps_the_previous_plugins(
    events: Events, tmp_path: Path, workers: int
) -> None:
    (tmp_path / "gate").touch()
    with spawn_runner(runner_args(workers)) as runner:
        wait_for_log(runner, "listening on")
        first = set(events.wait("async-hooks", "start", count=workers))
        events.wait("failing-start", "start", count=workers)
        before = {answer(runner, "failing-start") for _ in range(6)}
        (tmp_path / "fail").touch()
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reload failed, still serving the previous plugins")
        line = next(x for x in runner.log().splitlines() if "reload failed" in x)
        assert line.endswith(
            "reload failed, still serving the previous plugins: plugin 'failing-start' start "
            "raised ValueError: the token service at 127.0.0.1:1 refused the connection"
        )
        # the new instance that had started (async-hooks starts before failing-start) is
        # stopped; the old ones serve on
        (new,) = [i for i in events.of("async-hooks", "start") if i not in first]
        assert events.wait("async-hooks", "stop") == [new]
        assert events.of("failing-start", "stop") == []
        assert {answer(runner, "failing-start") for _ in range(6)} <= before | {
            f"pid={p}" for p in (worker_pids(runner) if workers > 1 else ())
        }
        (tmp_path / "fail").unlink()  # the next reload works
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reload done" if workers > 1 else "reloaded: 6 plugins")
        assert runner.stop(WAIT) == 0
        assert "Traceback" not in runner.log()
    # every instance that started stopped exactly once
    for name in NAMES:
        assert sorted(events.of(name, "stop")) == sorted(events.of(name, "start"))


def test_one_process_reload_stops_the_old_instance_once_its_call_in_flight_ended(
    events: Events, tmp_path: Path
) -> None:
    (tmp_path / "gate").touch()
    call_gate = tmp_path / "call-gate"
    with spawn_runner(runner_args()) as runner, runner.client(timeout=WAIT) as apisix:
        (old,) = events.wait("async-hooks", "start")
        token = apisix.prepare_conf([("async-hooks", {"gate": str(call_gate)})])
        apisix.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
        events.wait("async-hooks", "call-entered")
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reloaded: 6 plugins")
        new = events.wait("async-hooks", "start", count=2)[1]
        # the old instances wait for the call in flight; the new ones serve
        assert events.of("async-hooks", "stop") == events.of("sync-hooks", "stop") == []
        with runner.client(timeout=WAIT) as other:
            other_token = other.prepare_conf([("async-hooks", {})])
            assert other.http_req_call(other_token).body.endswith(f"instance={new[1]}".encode())
        call_gate.touch()
        reply = decode_reply(*apisix.read_frame())
        assert reply.body == f"started=True pid={old[0]} instance={old[1]}".encode()
        assert events.wait("async-hooks", "stop") == [old]
        events.wait("sync-hooks", "stop")
        assert runner.stop(WAIT) == 0
    assert events.of("async-hooks", "stop") == [old, new]


def test_shutdown_stops_the_instances_a_reload_retired_though_their_call_never_ended(
    events: Events, tmp_path: Path
) -> None:
    (tmp_path / "gate").touch()
    with spawn_runner(runner_args()) as runner, runner.client(timeout=WAIT) as apisix:
        (old,) = events.wait("async-hooks", "start")
        token = apisix.prepare_conf([("async-hooks", {"gate": str(tmp_path / "never")})])
        apisix.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
        events.wait("async-hooks", "call-entered")
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reloaded: 6 plugins")
        new = events.wait("async-hooks", "start", count=2)[1]
        assert runner.stop(WAIT) == 0  # the call is abandoned at the end of the grace
        assert "1 calls still running at shutdown: abandoned" in runner.log()
    assert sorted(events.of("async-hooks", "stop")) == sorted([old, new])
    assert len(events.of("sync-hooks", "stop")) == 2


@pytest.mark.parametrize("when", ["startup", "reload"])
def test_a_worker_that_dies_in_its_start_is_started_again_or_fails_the_reload(
    events: Events, tmp_path: Path, when: str
) -> None:
    (tmp_path / "gate").touch()
    if when == "startup":
        (tmp_path / "exit").touch()
    with spawn_runner(runner_args(2)) as runner:
        if when == "startup":  # it died before serving: started again, with a backoff
            wait_for_log(runner, "died with status 3: starting a new one in 0.5s")
            wait_for_log(runner, "died with status 3: starting a new one in 1s")
            (tmp_path / "exit").unlink()
            wait_for_log(runner, "ready: its plugins started", count=2)
        else:  # a successor that died before serving: the reload fails, the old one stays
            wait_for_log(runner, "ready: its plugins started", count=2)
            (tmp_path / "exit").touch()
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(
                runner,
                "reload failed, still serving the previous plugins: worker 0 died with "
                "status 3 before it was ready",
            )
            assert "replaced by pid" not in runner.log()
        assert answer(runner, "sync-hooks").startswith("started=True")
        assert runner.stop(WAIT) == 0


def test_a_replaced_worker_stops_its_plugins_after_its_successor_started(
    events: Events, tmp_path: Path
) -> None:
    (tmp_path / "gate").touch()
    with spawn_runner(runner_args(2)) as runner:
        wait_for_log(runner, "listening on")
        first = events.wait("sync-hooks", "start", count=2)
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reload done")
        rows = [(p, i, e) for p, n, i, e in events.read() if n == "sync-hooks"]
        starts = [(p, i) for p, i, e in rows if e == "start"]
        assert len(starts) == 4
        for old in first:  # each old instance stopped after a new one started
            stopped_at = rows.index((*old, "stop"))
            assert sum(1 for p, i, e in rows[:stopped_at] if e == "start") > 2
        assert runner.stop(WAIT) == 0


def test_a_reload_that_fails_on_the_second_worker_is_undone_on_the_first(
    events: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers are replaced one at a time: when the second successor's start fails, the
    first worker, already on the new plugins, is replaced again by the previous ones."""
    (tmp_path / "gate").touch()
    monkeypatch.setenv("A6_LIFECYCLE_FAIL_AT", "4")  # 2 at startup, then the 2nd successor
    with spawn_runner(runner_args(2)) as runner:
        wait_for_log(runner, "ready: its plugins started", count=2)
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reload undone: every worker serves the previous plugins again")
        log = runner.log()
        assert "plugin 'counted-start' start raised ValueError: start number 4 fails" in log
        assert "reload failed, still serving the previous plugins" in log
        assert log.count("replaced by pid") == 2  # worker 0 to the new plugins, and back
        assert "reload done" not in log
        assert len(events.of("counted-start", "start")) == 4  # the 5th start: the way back
        assert runner.stop(WAIT) == 0
    assert sorted(events.of("sync-hooks", "stop")) == sorted(events.of("sync-hooks", "start"))


def test_a_dead_worker_whose_replacement_cannot_start_is_retried_with_a_backoff(
    events: Events, tmp_path: Path
) -> None:
    (tmp_path / "gate").touch()
    with spawn_runner(runner_args(2)) as runner:
        wait_for_log(runner, "ready: its plugins started", count=2)  # not starting any more
        (tmp_path / "fail").touch()
        before = worker_pids(runner)
        victim = max(before)
        (survivor,) = before - {victim}
        os.kill(victim, signal.SIGKILL)
        wait_for_log(runner, "start raised ValueError: the token service at 127.0.0.1:1 refused")
        wait_for_log(runner, "; starting another in 0.5s")
        wait_for_log(runner, "; starting another in 1s")  # the backoff doubles
        assert answer(runner, "failing-start") == f"pid={survivor}"  # the other one serves
        (tmp_path / "fail").unlink()
        wait_until(lambda: len(events.of("failing-start", "start")) == 3, "a replacement")
        assert runner.process.poll() is None
        assert runner.stop(WAIT) == 0


# -- the pieces ------------------------------------------------------------------------------


def test_stop_hooks_run_at_once_bounded_and_each_failure_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    release = threading.Event()
    seen: list[str] = []

    class Hangs(Plugin):
        name = "hangs"

        def stop(self) -> None:
            release.wait()
            seen.append("hangs done")

    class AsyncHangs(Plugin):
        name = "async-hangs"

        async def stop(self) -> None:
            await asyncio.Event().wait()

    class Returns(Plugin):
        name = "returns-awaitable"

        def stop(self) -> Any:  # a plain def returning an awaitable: awaited on the loop
            async def later() -> None:
                seen.append("awaited")

            return later()

    class Raises(Plugin):
        name = "raises"

        def stop(self) -> None:
            raise KeyboardInterrupt

    class Quiet(Plugin):
        name = "quiet"  # no stop: nothing runs for it

    async def main() -> None:
        lifecycle = PluginLifecycle()
        await lifecycle.start({p.name: p for p in (Hangs(), AsyncHangs(), Raises(), Quiet())})
        returns = Returns()
        await lifecycle.start({"returns-awaitable": returns})
        await lifecycle.stop([("returns-awaitable", returns)], 5.0)
        assert seen == ["awaited"]
        await lifecycle.stop_all(0.2)

    with caplog.at_level(logging.INFO, logger="a6runner"):
        asyncio.run(main())
    release.set()
    assert "awaited" in seen
    text = caplog.text
    assert "plugin 'hangs' stop did not finish within 0.2s: left behind" in text
    assert "plugin 'async-hangs' stop did not finish within 0.2s: left behind" in text
    assert "plugin 'raises' stop raised KeyboardInterrupt" in text
    assert "returns-awaitable" not in text and "quiet" not in text


def test_the_lifecycle_stops_each_instance_once() -> None:
    stopped: list[int] = []

    class Counted(Plugin):
        name = "counted"

        def stop(self) -> None:
            stopped.append(id(self))

    async def main() -> None:
        lifecycle = PluginLifecycle()
        a, b = Counted(), Counted()
        await lifecycle.start({"counted": a})
        await lifecycle.start({"counted": b})
        await lifecycle.stop([("counted", a), ("counted", a)], 1.0)
        await lifecycle.stop_all(1.0)
        await lifecycle.stop_all(1.0)
        assert stopped == [id(a), id(b)]

    asyncio.run(main())


def test_a_stray_cancelled_error_from_a_start_is_a_start_failure() -> None:
    class Stray(Plugin):
        name = "stray"

        async def start(self) -> None:
            raise asyncio.CancelledError  # not the runner cancelling it

    async def main() -> None:
        with pytest.raises(PluginStartError, match="plugin 'stray' start raised CancelledError"):
            await PluginLifecycle().start({"stray": Stray()})

    asyncio.run(main())
