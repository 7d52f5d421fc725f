"""The process contract (PROTOCOL.md §1): environment, socket file, signals, startup errors."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support_plugins import Holding

from a6runner._kernels import codec
from a6runner.testing import RunnerProcess, decode_reply, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("APISIX_LISTEN_ADDRESS", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "a6runner", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for_log(runner: RunnerProcess, text: str, timeout: float = 30.0) -> str:
    """Wait until the runner's log says ``text``; the log."""
    import time

    deadline = time.monotonic() + timeout
    while text not in (log := runner.log()):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{log}"
        time.sleep(0.01)
    return log


def test_socket_mode_is_0766_and_socket_removed_at_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    with spawn_runner(["--plugins", SUPPORT], socket_path=path) as runner:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o766
        with runner.client() as apisix:
            token = apisix.prepare_conf([("stopper", {"body": "hi"})])
            assert apisix.http_req_call(token).body == b"hi"
        assert runner.stop() == 0
    assert not os.path.exists(path)


def test_socket_mode_flag(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    with spawn_runner(["--socket-mode", "0700"], socket_path=path) as runner:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert runner.stop() == 0


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "r.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays: a stale socket, like after a crash
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with spawn_runner(socket_path=path) as runner, runner.client() as apisix:
        assert apisix.prepare_conf([("say", {"body": "x"})]) != 0
        runner.stop()


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    path.write_text("precious")
    result = run_cli("run", env={"APISIX_LISTEN_ADDRESS": f"unix:{path}"})
    assert result.returncode != 0
    assert "is not a socket" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == "precious"


@pytest.mark.parametrize("value", ["/tmp/x.sock", "tcp://127.0.0.1:1", "unix:"])
def test_listen_address_must_be_unix(value: str) -> None:
    result = run_cli("run", env={"APISIX_LISTEN_ADDRESS": value})
    assert result.returncode != 0
    assert "APISIX_LISTEN_ADDRESS" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_listen_address_is_a_clear_error() -> None:
    result = run_cli("run")
    assert result.returncode != 0
    assert "APISIX_LISTEN_ADDRESS is not set" in result.stderr


def test_bad_conf_expire_time_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        env={"APISIX_LISTEN_ADDRESS": f"unix:{tmp_path}/r.sock", "APISIX_CONF_EXPIRE_TIME": "soon"},
    )
    assert result.returncode != 0 and "APISIX_CONF_EXPIRE_TIME" in result.stderr


def test_broken_plugin_module_is_a_clear_startup_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import a_module_that_does_not_exist\n")
    result = run_cli(
        "run", "--plugins", str(broken), env={"APISIX_LISTEN_ADDRESS": f"unix:{tmp_path}/r.sock"}
    )
    assert result.returncode == 2
    assert "broken_plugin.py" in result.stderr and "a_module_that_does_not_exist" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("plugins", "--plugins", "no_such_module_anywhere")
    assert result.returncode == 2 and "no_such_module_anywhere" in result.stderr


def test_duplicate_plugin_names_are_an_error(tmp_path: Path) -> None:
    dup = tmp_path / "dup.py"
    dup.write_text("from a6runner import Plugin\n\nclass MySay(Plugin):\n    name = 'say'\n")
    result = run_cli("plugins", "--plugins", str(dup))
    assert result.returncode == 2
    assert "'say' is registered twice" in result.stderr


def test_plugins_command_lists_names_and_origins() -> None:
    result = run_cli("plugins", "--plugins", SUPPORT)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["say"].startswith("bundled a6runner.plugins.")
    assert lines["echo-input"] == f"path {SUPPORT}"


def test_conf_expire_time_comes_from_the_environment(tmp_path: Path) -> None:
    import time

    with spawn_runner(["--plugins", SUPPORT], conf_expire_time=0.1) as runner:
        wait_for_log(runner, "conf TTL 0.12s")  # APISIX_CONF_EXPIRE_TIME x 1.2
        with runner.client() as apisix:
            token = apisix.prepare_conf([("stopper", {"body": "x"})])
            # The default TTL (an hour) would outlive this loop by far.
            deadline = time.monotonic() + 30
            while apisix.http_req_call(token).kind != "error":
                assert time.monotonic() < deadline, "the token never expired"
                time.sleep(0.01)
            assert apisix.http_req_call(token).error == "CONF_TOKEN_NOT_FOUND"
        runner.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_calls_in_flight_then_exits_0(tmp_path: Path, signum: int) -> None:
    from a6runner._kernels import codec
    from a6runner.testing import decode_reply

    path = str(tmp_path / "r.sock")
    with spawn_runner(["--plugins", SUPPORT], socket_path=path) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr"]})])
            apisix.send_raw(codec.build_http_req_call_req(7, token, 0, "/", [], [], None))
            frame_type, _ = apisix.read_frame()
            assert frame_type == codec.RPC_EXTRA_INFO  # the call is in the runner, waiting
            runner.process.send_signal(signum)
            apisix.send_raw(codec.build_extra_info_resp(b"10.0.0.1"))
            reply = decode_reply(*apisix.read_frame())
            assert reply.action == "stop" and reply.id == 7
            assert reply.body == b'{"remote_addr": "10.0.0.1"}'
        assert runner.process.wait(5) == 0
        assert not os.path.exists(path)
        log = runner.log()
        assert "Traceback" not in log


def test_run_from_python_with_plugin_classes(tmp_path: Path) -> None:
    """``a6runner.run(plugins=[...])`` is the programmatic twin of ``a6-runner run``."""
    import time

    from a6runner.testing import Client

    path = tmp_path / "r.sock"
    script = tmp_path / "my_runner.py"
    script.write_text(
        "import sys\n"
        "import a6runner\n\n"
        "class Hello(a6runner.Plugin):\n"
        "    name = 'hello'\n"
        "    def request_filter(self, conf, req):\n"
        "        req.respond(200, 'hello from run()')\n\n"
        f"sys.exit(a6runner.run([Hello], listen='unix:{path}', bundled=False))\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        # the socket file appears at bind, before listen: wait until a connect succeeds
        deadline = time.monotonic() + 60  # a bound for a runner that never listens
        while True:
            try:
                apisix = Client(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                assert process.poll() is None and time.monotonic() < deadline, "never listened"
                time.sleep(0.02)
        with apisix:
            token = apisix.prepare_conf([("hello", {})])
            assert apisix.http_req_call(token).body == b"hello from run()"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=5)
    assert not path.exists()
    assert b"Traceback" not in err


def test_entry_point_plugins_are_discovered(tmp_path: Path) -> None:
    """A distribution declaring the ``a6runner.plugins`` entry-point group is loaded."""
    site = tmp_path / "site"
    dist = site / "greet_plugin-1.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greet-plugin\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[a6runner.plugins]\ngreet = greet_plugin:Greet\n")
    (site / "greet_plugin.py").write_text(
        "from a6runner import Plugin\n\n"
        "class Greet(Plugin):\n"
        "    name = 'greet'\n"
        "    def request_filter(self, conf, req):\n"
        "        req.respond(200, 'hi')\n"
    )
    env = {"PYTHONPATH": str(site)}
    result = run_cli("plugins", env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["greet"] == "entry point greet = greet_plugin:Greet (greet-plugin 1.2)"
    assert "greet" not in run_cli("plugins", "--no-entry-points", env=env).stdout

    (site / "greet_plugin.py").write_text("raise ImportError('broken on purpose')\n")
    result = run_cli("plugins", env=env)
    assert result.returncode == 2
    assert "greet = greet_plugin:Greet" in result.stderr and "broken on purpose" in result.stderr


def test_tokens_of_a_previous_runner_are_not_found_after_a_restart(tmp_path: Path) -> None:
    """APISIX's 'token refresh after the runner lost it': the new runner hands out other
    tokens than the old one did (it starts at a random point), so an old token is
    CONF_TOKEN_NOT_FOUND there even once confs were prepared; APISIX prepares again."""
    path = str(tmp_path / "r.sock")
    confs = [[("say", {"body": f"route {i}"})] for i in range(20)]
    with spawn_runner(socket_path=path) as first, first.client() as apisix:
        old = [apisix.prepare_conf(conf) for conf in confs]
        assert apisix.http_req_call(old[0]).body == b"route 0"
        first.stop()
    with spawn_runner(socket_path=path) as second, second.client() as apisix:
        new = [apisix.prepare_conf(conf) for conf in confs]
        assert set(old).isdisjoint(new)
        for token in old:
            assert apisix.http_req_call(token).error == "CONF_TOKEN_NOT_FOUND"
        assert apisix.http_req_call(new[0]).body == b"route 0"
        second.stop()


def test_accept_failing_for_lack_of_descriptors_keeps_serving_what_it_has() -> None:
    """EMFILE on accept: the connections the runner has keep working, and the waiting
    connection is taken once a descriptor is free again."""
    with spawn_runner(["--plugins", SUPPORT]) as runner:
        pid = runner.process.pid
        first = runner.client()
        token = first.prepare_conf([("stopper", {"body": "served"})])
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        in_use = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        limit = max(in_use) + 1
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
        # connections that take the free descriptors below the limit, so none is left
        fillers = [runner.client() for _ in range(limit - len(in_use))]
        waiting = runner.client()  # the connect succeeds: it waits in the backlog
        try:
            for filler in fillers:
                assert filler.http_req_call(token).body == b"served"
            waiting.send_raw(codec.build_http_req_call_req(9, token, 0, "/", [], [], None))
            assert "Too many open files" in wait_for_log(runner, "accept failed")
            assert first.http_req_call(token).body == b"served"
            first.close()  # frees a descriptor: the waiting connection is accepted
            reply = decode_reply(*waiting.read_frame())
            assert reply.id == 9 and reply.body == b"served"
        finally:
            for client in [first, waiting, *fillers]:
                client.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert runner.stop() == 0


def test_a_call_still_running_after_the_grace_period_is_abandoned_at_shutdown(
    tmp_path: Path,
) -> None:
    held = Holding(tmp_path)  # waits in a task: SIGTERM is handled, the call never ends
    with spawn_runner(["--plugins", SUPPORT]) as runner, runner.client() as apisix:
        token = apisix.prepare_conf([("hold", held.conf)])
        apisix.send_raw(codec.build_http_req_call_req(1, token, 0, "/", [], [], None))
        held.wait_entered()
        runner.process.send_signal(signal.SIGTERM)
        assert runner.process.wait(30) == 0
        with pytest.raises(ConnectionError):
            apisix.read_frame()  # closed unanswered: APISIX retries elsewhere
        log = runner.log()  # (spawn_runner removes the log when the block ends)
    assert "1 calls still running at shutdown: abandoned" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_either_event_loop_serves_calls_and_extra_info(loop: str) -> None:
    with spawn_runner(["--loop", loop, "--plugins", SUPPORT]) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr"]})])
            reply = apisix.http_req_call(token, vars={"remote_addr": "10.0.0.3"})
            assert reply.body == b'{"remote_addr": "10.0.0.3"}'
        assert runner.stop() == 0
