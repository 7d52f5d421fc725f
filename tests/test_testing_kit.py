"""The testing kit itself: what its helpers leave behind, and how it starts other runners."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from a6runner.testing import run_runner, spawn_runner


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
