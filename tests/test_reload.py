"""SIGHUP reloads the plugins without dropping a call, over the real socket: a call in
flight finishes on the old code, the same token answers with the new code, a reload that
fails to import keeps the old plugins, ``--workers 2`` are replaced one by one while a
client is served, ``--reload`` follows file changes. Every wait observes an event (a file
appearing, a log line); nothing depends on timing."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest
from processes import WAIT, wait_for_log, wait_until

from a6runner._kernels import codec
from a6runner.testing import Client, decode_reply, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject


PLUGIN = """\
import asyncio
import os

from a6runner import Plugin

VERSION = {version!r}


class Version(Plugin):
    name = "version"

    def parse_conf(self, raw):
        return {{"parsed_by": VERSION, **self.parse_json_object(raw)}}

    async def request_filter(self, conf, req):
        if "gate" in conf:  # a call that waits in flight until the test lets it go
            open(conf["started"], "w").close()
            while not os.path.exists(conf["gate"]):
                await asyncio.sleep(0.01)
        req.respond(200, f"{{VERSION}} parsed-by-{{conf['parsed_by']}} pid-{{os.getpid()}}")
"""


def write_plugin(path: Path, version: str) -> None:
    path.write_text(PLUGIN.format(version=version))


def answer(apisix: Client, token: int) -> str:
    reply = apisix.http_req_call(token)
    assert reply.action == "stop", reply.error
    return (reply.body or b"").decode()


@pytest.mark.parametrize("spec", ["file", "module"])
def test_reload_keeps_calls_in_flight_and_tokens(tmp_path: Path, spec: str) -> None:
    if spec == "file":
        source = tmp_path / "version_plugin.py"
        args, env = ["--plugins", str(source)], None
    else:
        (tmp_path / "reload_pkg").mkdir()
        (tmp_path / "reload_pkg" / "__init__.py").write_text("")
        source = tmp_path / "reload_pkg" / "version.py"
        args = ["--plugins", "reload_pkg.version"]
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    write_plugin(source, "v1")
    gate, started = tmp_path / "gate", tmp_path / "started"
    with spawn_runner(["--no-bundled", "--no-entry-points", *args], env=env) as runner:
        with runner.client() as waiting, runner.client() as apisix:
            slow = waiting.prepare_conf([("version", {"gate": str(gate), "started": str(started)})])
            token = apisix.prepare_conf([("version", {})], key="route-1")
            assert answer(apisix, token).startswith("v1 parsed-by-v1")
            waiting.send_raw(codec.build_http_req_call_req(7, slow, 0, "/", [], [], None))
            wait_until(started.exists, "the slow call to start")

            write_plugin(source, "v2-edited")  # another length: a stale .pyc cannot match
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reloaded: 1 plugins (version); 2 live confs parsed again")
            # the same token, the new code, the conf parsed again by it
            assert answer(apisix, token).startswith("v2-edited parsed-by-v2-edited")
            assert apisix.prepare_conf([("version", {})], key="route-1") == token

            gate.touch()  # the call in flight finishes, on the code it started with
            reply = decode_reply(*waiting.read_frame())
            assert reply.id == 7 and (reply.body or b"").startswith(b"v1 parsed-by-v1")

            source.write_text("def broken(:\n")
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reload failed, still serving the previous plugins")
            failure = next(line for line in runner.log().splitlines() if "reload failed" in line)
            assert ("version_plugin.py" if spec == "file" else "reload_pkg.version") in failure
            assert "SyntaxError" in failure
            assert answer(apisix, token).startswith("v2-edited parsed-by-v2-edited")

            write_plugin(source, "v3")  # and the next good reload works again
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reloaded: 1 plugins (version)", count=2)
            assert answer(apisix, token).startswith("v3 parsed-by-v3")
        assert runner.stop(WAIT) == 0
        assert not os.path.exists(runner.socket_path)
        assert "Traceback" not in runner.log()


def test_sighup_never_kills_the_runner(tmp_path: Path) -> None:
    """Before, SIGHUP's default action ended the runner (status 129) and left the socket."""
    with spawn_runner(
        ["--no-bundled", "--plugins", str(Path(__file__).parent / "support_plugins.py")]
    ) as runner:
        for n in range(1, 4):
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reloaded:", count=n)
        with runner.client() as apisix:
            token = apisix.prepare_conf([("stopper", {"body": "still here"})])
            assert apisix.http_req_call(token).body == b"still here"
        assert runner.process.poll() is None
        assert runner.stop(WAIT) == 0
    assert not os.path.exists(runner.socket_path)


class HealthyClient(threading.Thread):
    """APISIX-like traffic across a reload: one call per fresh connection, one after the
    other, every outcome recorded (a refused connect or any error counts)."""

    def __init__(self, socket_path: str, token: int) -> None:
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.token = token
        self.bodies: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with Client(self.socket_path, timeout=WAIT) as apisix:
                    reply = apisix.http_req_call(self.token)
                if reply.action != "stop":
                    self.errors.append(f"reply {reply.action}: {reply.error}")
                else:
                    self.bodies.append((reply.body or b"").decode())
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def served(self) -> int:
        return len(self.bodies)


def test_workers_are_replaced_one_by_one_while_a_client_is_served(tmp_path: Path) -> None:
    source = tmp_path / "version_plugin.py"
    write_plugin(source, "v1")
    with spawn_runner(["--workers", "2", "--no-bundled", "--plugins", str(source)]) as runner:
        wait_for_log(runner, "listening on")
        with runner.client() as apisix:
            token = apisix.prepare_conf([("version", {})], key="route-1")
        client = HealthyClient(runner.socket_path, token)
        client.start()
        try:
            wait_until(lambda: client.served() >= 20, "calls before the reload")
            write_plugin(source, "v2-edited")
            runner.process.send_signal(signal.SIGHUP)
            wait_for_log(runner, "reload done: every worker serves the new plugins")
            after = client.served()
            wait_until(lambda: client.served() >= after + 20, "calls after the reload")
        finally:
            client.stop.set()
            client.join(WAIT)
        assert client.errors == []
        log = runner.log()
        assert log.count("replaced by pid") == 2 and log.count("finished its calls") == 2
        assert "died" not in log and "abandoned" not in log
        old_pids = {b.split("pid-")[1] for b in client.bodies if b.startswith("v1 ")}
        new_pids = {b.split("pid-")[1] for b in client.bodies[after:]}
        assert all(b.startswith("v2-edited parsed-by-v2-edited") for b in client.bodies[after:])
        assert old_pids and new_pids and not old_pids & new_pids
        assert all(b.startswith(("v1 parsed-by-v1", "v2-edited")) for b in client.bodies)
        with runner.client() as apisix:  # the same key still names the same token
            assert apisix.prepare_conf([("version", {})], key="route-1") == token
        assert runner.stop(WAIT) == 0


def test_a_broken_reload_with_workers_keeps_them(tmp_path: Path) -> None:
    source = tmp_path / "version_plugin.py"
    write_plugin(source, "v1")
    with spawn_runner(["--workers", "2", "--no-bundled", "--plugins", str(source)]) as runner:
        wait_for_log(runner, "listening on")
        source.write_text("raise RuntimeError('half-written plugin')\n")
        runner.process.send_signal(signal.SIGHUP)
        wait_for_log(runner, "reload failed, still serving the previous plugins")
        assert "version_plugin.py" in runner.log() and "half-written plugin" in runner.log()
        with runner.client() as apisix:
            token = apisix.prepare_conf([("version", {})])
            assert answer(apisix, token).startswith("v1 parsed-by-v1")
        assert "replaced by pid" not in runner.log()
        assert runner.stop(WAIT) == 0


def test_reload_flag_follows_file_changes(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    folder = tmp_path / "plugins"
    folder.mkdir()
    source = folder / "version_plugin.py"
    write_plugin(source, "v1")
    with spawn_runner(["--no-bundled", "--reload", "--plugins", str(folder)]) as runner:
        wait_for_log(runner, f"--reload: watching {folder} for changes")
        with runner.client() as apisix:
            token = apisix.prepare_conf([("version", {})])
            assert answer(apisix, token).startswith("v1")
            write_plugin(source, "v2-edited")
            wait_for_log(runner, "plugin files changed (version_plugin.py): reloading")
            wait_for_log(runner, "reloaded: 1 plugins (version)")
            assert answer(apisix, token).startswith("v2-edited parsed-by-v2-edited")
        assert runner.stop(WAIT) == 0


def test_reload_flag_without_watchfiles_says_what_to_install(tmp_path: Path) -> None:
    import subprocess

    blocker = tmp_path / "sitecustomize.py"  # as if watchfiles were not installed
    blocker.write_text("import sys\nsys.modules['watchfiles'] = None\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "APISIX_LISTEN_ADDRESS": f"unix:{tmp_path}/r.sock",
    }
    plugin = tmp_path / "version_plugin.py"
    write_plugin(plugin, "v1")
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", "run", "--reload", "--plugins", str(plugin)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert "--reload needs the watchfiles package: pip install 'a6runner[reload]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.sock").exists()
    result = subprocess.run(
        [sys.executable, "-m", "a6runner", "run", "--reload", "--no-bundled"],
        env={**env, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "name at least one" in result.stderr


# -- the pieces, in this process -----------------------------------------------------------


@pytest.fixture
def on_path(tmp_path: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_the_loader_imports_module_plugins_afresh_and_restores_them_on_failure(
    on_path: Path,
) -> None:
    from a6runner._registry import PluginLoadError
    from a6runner._reload import PluginLoader

    (on_path / "loader_pkg").mkdir()
    (on_path / "loader_pkg" / "__init__.py").write_text("")
    source = on_path / "loader_pkg" / "version.py"
    write_plugin(source, "v1")
    (on_path / "single_file_plugin.py").write_text(
        PLUGIN.format(version="x").replace("version", "single")
    )
    loader = PluginLoader(
        paths=["loader_pkg.version", "single_file_plugin"], bundled=False, entry_points=False
    )
    first = loader.load()
    old_module = sys.modules["loader_pkg.version"]
    assert loader.watched_paths() == sorted(
        [str(on_path / "loader_pkg"), str(on_path / "single_file_plugin.py")]
    )
    write_plugin(source, "v2-edited")
    second = loader.reload()
    assert sys.modules["loader_pkg.version"] is not old_module  # a new module object
    assert type(second["version"].plugin) is not type(first["version"].plugin)
    assert old_module.VERSION == "v1"  # code still running keeps its own globals
    source.write_text("raise RuntimeError('half-written')\n")
    with pytest.raises(PluginLoadError, match=r"loader_pkg\.version.*half-written"):
        loader.reload()
    assert sys.modules["loader_pkg.version"].VERSION == "v2-edited"  # as before the failure
    write_plugin(source, "v3")
    assert type(loader.reload()["version"].plugin).__module__ == "loader_pkg.version"
    assert sys.modules["loader_pkg.version"].VERSION == "v3"


def test_the_watcher_calls_back_on_a_change_and_reports_a_failure(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    import logging

    from a6runner._reload import watch_plugin_files

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("a6runner")
    logger.addHandler(handler)
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.INFO)  # (setLevel: it clears the logger's cache of levels)
    logger.disabled = False
    try:
        source = tmp_path / "watched.py"
        source.write_text("VERSION = 1\n")
        changed = threading.Event()
        stop = watch_plugin_files([str(source)], on_change=changed.set)
        try:
            wait_until(lambda: any("watching" in r.getMessage() for r in records), "the watch")
            (tmp_path / "other.py").write_text("not watched\n")
            source.write_text("VERSION = 2\n")
            assert changed.wait(WAIT)
        finally:
            stop.set()
        stop = watch_plugin_files([str(tmp_path / "gone" / "x.py")], on_change=changed.set)
        wait_until(
            lambda: any("watching the plugin files failed" in r.getMessage() for r in records),
            "the failure",
        )
        stop.set()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled


def test_a_replaced_worker_that_dies_is_not_started_again(tmp_path: Path) -> None:
    """The supervisor's reaper: an old worker dying while its replacement is already
    starting is not respawned (that would leave an extra worker): the replacement takes
    its place at once; a retiring one neither."""
    from a6runner._reload import PluginLoader
    from a6runner._settings import Settings
    from a6runner._workers import Supervisor, _Channel

    loader = PluginLoader(bundled=False, entry_points=False)
    supervisor = Supervisor(Settings(str(tmp_path / "x.sock")), {}, loader)
    supervisor.generation = 1
    replacement = _Channel(0, socket.socket(), -1, generation=1)  # alive, as far as it knows
    supervisor.channels[-1] = replacement
    dead = []
    for retiring in (False, True):
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        channel = _Channel(0, socket.socket(), pid, generation=0)
        channel.ready = True
        channel.retiring = retiring
        if not retiring:
            channel.successor, replacement.predecessor = replacement, channel
        supervisor.channels[pid] = channel
        dead.append(pid)
    try:
        for pid in dead:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        supervisor._reap()
        assert list(supervisor.channels.values()) == [replacement]
        assert replacement.predecessor is None  # nothing to retire once it is ready
        supervisor._start_vacant()  # it would fail (no listener) if it started a worker
    finally:
        for pid in dead:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        replacement.sock.close()


def test_a_retiring_server_closes_each_connection_once_idle(tmp_path: Path) -> None:
    """Server.retire (a worker replaced after a reload): an idle connection is closed at
    once (APISIX's next call goes to another worker), one with a call in flight only
    after that call's answer, and no connection is closed with a frame unread."""
    import asyncio

    from a6runner import Plugin
    from a6runner._confstore import ConfStore
    from a6runner._server import Listener, Server
    from a6runner._services import LocalServices
    from a6runner.testing import AsyncClient

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        class Gated(Plugin):
            name = "gated"

            async def request_filter(self, conf: object, req: object) -> None:
                started.set()
                await release.wait()
                req.respond(200, "done")  # type: ignore[attr-defined]

        plugins = {"gated": Gated()}
        listener = Listener(str(tmp_path / "r.sock"), 0o700)
        server = Server(listener.sock, ConfStore(plugins, 3600), LocalServices())
        await server.start()
        try:
            idle = await AsyncClient.connect(listener.path)
            busy = await AsyncClient.connect(listener.path)
            token = await idle.prepare_conf([("gated", {})])
            assert await busy.prepare_conf([("gated", {})], key="k") != 0
            call = asyncio.ensure_future(busy.http_req_call(token))
            await started.wait()
            retiring = asyncio.ensure_future(server.retire(30))
            assert await idle._reader.read() == b""  # closed while idle
            assert not call.done() and not retiring.done()
            release.set()
            assert (await call).body == b"done"  # the call in flight got its answer
            assert await busy._reader.read() == b""  # then its connection was closed
            await retiring
            assert not server.connections
            await idle.close()
            await busy.close()
        finally:
            listener.close()

    asyncio.run(main())
