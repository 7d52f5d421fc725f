"""Where the log goes and what a line looks like: --log-file (whole lines from every
process, reopened on SIGUSR1), --log-format json (one object per line, short enough for
APISIX's 3800-byte reads), and every error line about a plugin names it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import WAIT, wait_until

from a6runner import PluginError
from a6runner._errors import ConfigError
from a6runner._logging import (
    MAX_LINE,
    AppendFileHandler,
    JsonFormatter,
    reopen_log_file,
    set_process_label,
    setup_logging,
)
from a6runner.testing import AsyncClient, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def record(
    msg: str = "hello %s", args: tuple[Any, ...] = ("there",), **extra: Any
) -> logging.LogRecord:
    rec = logging.LogRecord("a6runner", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("a6runner")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved
    set_process_label("runner")


# -- the JSON line ------------------------------------------------------------------------


def test_a_json_line_carries_the_fields_a_record_has() -> None:
    line = json.loads(JsonFormatter().format(record(event="call", plugin="say", token=7, call=3)))
    assert line["level"] == "warning" and line["message"] == "hello there"
    assert line["worker"] == "runner" and line["pid"] == os.getpid()
    assert (line["event"], line["plugin"], line["token"], line["call"]) == ("call", "say", 7, 3)
    assert "error" not in line and "traceback" not in line
    assert line["time"].endswith("Z") and "T" in line["time"]
    line = json.loads(JsonFormatter().format(record(worker="worker 1", error="TimeoutError")))
    assert line["worker"] == "worker 1" and line["error"] == "TimeoutError"


def test_the_process_label_names_the_worker() -> None:
    set_process_label("worker 3")
    try:
        assert json.loads(JsonFormatter().format(record()))["worker"] == "worker 3"
    finally:
        set_process_label("runner")


def _traceback_through(depth: int) -> BaseException:
    """An exception raised through ``depth`` distinct functions (a long traceback: Python
    folds repeated lines of one recursive function)."""
    namespace: dict[str, Any] = {}
    source = "def f0():\n    raise KeyError('the bottom')\n" + "".join(
        f"def f{i}():\n    return f{i - 1}()\n" for i in range(1, depth)
    )
    exec(compile(source, "deep_plugin.py", "exec"), namespace)
    try:
        namespace[f"f{depth - 1}"]()
    except KeyError as exc:
        return exc
    raise AssertionError("not raised")


def test_a_plugin_error_is_one_short_json_line_naming_the_plugin() -> None:
    cause = _traceback_through(300)
    error = PluginError("deep", "request", cause)
    error.__cause__ = cause
    rec = record("call 5: %s: answered SERVICE_UNAVAILABLE", (error,))
    rec.exc_info = (PluginError, error, error.__traceback__)
    out = JsonFormatter().format(rec)
    assert "\n" not in out and len(out.encode()) <= MAX_LINE
    line = json.loads(out)
    assert line["plugin"] == "deep" and line["phase"] == "request"
    assert line["exception"] == "KeyError: 'the bottom'"
    tb = line["traceback"].splitlines()
    assert tb[0] == "Traceback (most recent call last):"
    assert tb[1] == "  ... (older frames cut)"
    assert tb[-1] == "KeyError: 'the bottom'" and "in f0" in line["traceback"]


def test_an_error_that_is_not_a_plugin_error_keeps_its_own_traceback() -> None:
    try:
        {}["missing"]
    except KeyError:
        rec = record("internal error", ())
        rec.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(rec))
    assert line["exception"] == "KeyError: 'missing'" and "plugin" not in line
    assert "Traceback" in line["traceback"] and "test_logging.py" in line["traceback"]


def test_a_huge_message_is_cut_to_fit() -> None:
    out = JsonFormatter().format(record("%s", ("é" * 20000,), plugin="p"))
    assert len(out.encode()) <= MAX_LINE
    line = json.loads(out)
    assert line["message"].endswith(" ... (cut)") and line["plugin"] == "p"
    cause = _traceback_through(60)
    rec = record("%s", ("m" * 5000,))
    rec.exc_info = (KeyError, cause, cause.__traceback__)
    cause.args = ("x" * 8000,)
    out = JsonFormatter().format(rec)
    assert len(out.encode()) <= MAX_LINE
    line = json.loads(out)
    assert line["exception"].endswith(" ... (cut)") and line["traceback"]


# -- setup_logging and the file -------------------------------------------------------------


def test_setup_logging_refuses_unknown_levels_and_formats(restore_logging: None) -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        setup_logging("loud")
    with pytest.raises(ConfigError, match="unknown log format 'xml'"):
        setup_logging("info", None, "xml")


def test_the_log_file_is_appended_and_reopened(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "runner.log"
    path.write_text("kept\n")
    setup_logging("info", str(path), "text")
    log = logging.getLogger("a6runner")
    log.info("first")
    path.rename(tmp_path / "runner.log.1")
    reopen_log_file()
    log.info("second")
    assert text(tmp_path / "runner.log.1").splitlines()[0] == "kept"
    assert "first" in text(tmp_path / "runner.log.1")
    assert "second" not in text(tmp_path / "runner.log.1")
    assert "log file" in text(path) and "reopened" in text(path) and "second" in text(path)
    setup_logging("info", str(path), "json")  # a new setup closes the previous file
    log.info("third")
    assert json.loads(text(path).splitlines()[-1])["message"] == "third"


def test_a_log_file_that_cannot_be_reopened_keeps_the_open_one(
    tmp_path: Path, restore_logging: None
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    setup_logging("info", str(folder / "runner.log"), "text")
    (folder / "runner.log").rename(tmp_path / "moved.log")
    folder.rmdir()  # logrotate's folder is gone: nothing to reopen into
    reopen_log_file()
    logging.getLogger("a6runner").info("still written")
    moved = text(tmp_path / "moved.log")
    assert "log file not reopened: cannot create the log file" in moved
    assert "still written" in moved


def test_a_failing_write_is_reported_not_raised(tmp_path: Path, restore_logging: None) -> None:
    handler = AppendFileHandler(str(tmp_path / "x.log"))
    handler.close()  # its descriptor is gone: emit() must not raise into the caller
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[method-assign]
    handler.emit(record())
    assert len(reported) == 1


# -- over the real socket ----------------------------------------------------------------


async def _calls(socket_path: str, conns: int, per_conn: int, conf: list[tuple[str, Any]]) -> int:
    async def one() -> int:
        client = await AsyncClient.connect(socket_path)
        try:
            token = await client.prepare_conf(conf)
            failed = 0
            for _ in range(per_conn):
                failed += (await client.http_req_call(token)).error == "SERVICE_UNAVAILABLE"
            return failed
        finally:
            await client.close()

    return sum(await asyncio.gather(*(one() for _ in range(conns))))


def test_log_file_text_goes_to_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "runner.log"
    with spawn_runner(["--plugins", SUPPORT, "--log-file", str(path)]) as runner:
        wait_until(lambda: "listening on" in text(path), "the startup line")
        with runner.client() as apisix:
            token = apisix.prepare_conf([("boom", {})])
            assert apisix.http_req_call(token).error == "SERVICE_UNAVAILABLE"
        wait_until(lambda: "plugin 'boom' request filter raised" in text(path), "the error")
        path.rename(tmp_path / "runner.log.1")
        runner.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopened" in text(path), "the reopened file")
        assert runner.stop(WAIT) == 0
        assert runner.log() == ""  # stdout and stderr: nothing
    assert "stopped after" in text(path) and "stopped after" not in text(tmp_path / "runner.log.1")


def test_workers_share_the_json_log_file_line_by_line(tmp_path: Path) -> None:
    """Two workers writing error lines with tracebacks at once, plus the supervisor: every
    line of the file is one whole JSON object; SIGUSR1 reopens it in every process."""
    path = tmp_path / "runner.log"
    args = ["--workers", "2", "--plugins", SUPPORT, "--log-file", str(path), "--log-format", "json"]
    with spawn_runner(args) as runner:
        wait_until(lambda: "listening on" in text(path), "the startup line")
        failed = asyncio.run(_calls(runner.socket_path, 8, 25, [("boom", {}), ("bad-conf", {})]))
        assert failed == 200
        wait_until(
            lambda: text(path).count("request filter raised") >= 200, "every call's error line"
        )
        path.rename(tmp_path / "runner.log.1")
        runner.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: text(path).count("reopened") == 3, "3 processes reopening the file")
        assert runner.stop(WAIT) == 0
    lines = json_lines(tmp_path / "runner.log.1")  # each line parses: none was interleaved
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 200
    assert {line["plugin"] for line in errors} == {"boom"}
    assert all(line["exception"] == "RuntimeError: plugin bug" for line in errors)
    assert all(line["traceback"].endswith("RuntimeError: plugin bug") for line in errors)
    assert {line["worker"] for line in errors} <= {"worker 0", "worker 1"}
    conf_warnings = [line for line in lines if "skipped" in line["message"]]
    assert conf_warnings and all("'bad-conf'" in line["message"] for line in conf_warnings)
    reopened = [line for line in json_lines(path) if "reopened" in line["message"]]
    assert {line["worker"] for line in reopened} == {"supervisor", "worker 0", "worker 1"}
    assert all(len(line.encode()) <= MAX_LINE for line in path.read_text().splitlines())


def test_json_lines_on_stderr_with_a_plugin_named_in_every_error(tmp_path: Path) -> None:
    args = ["--plugins", SUPPORT, "--log-format", "json", "--call-timeout", "0.5"]
    with spawn_runner(args) as runner:
        with runner.client() as apisix:
            token = apisix.prepare_conf([("boom", {})])
            assert apisix.http_resp_call(token).error == "SERVICE_UNAVAILABLE"  # async filter
            token = apisix.prepare_conf([("sleepy", {"seconds": 60})])
            assert apisix.http_req_call(token).error == "SERVICE_UNAVAILABLE"  # timed out
        assert runner.stop(WAIT) == 0
        lines = [json.loads(line) for line in runner.log().splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 2
    assert errors[0]["plugin"] == "boom" and errors[0]["phase"] == "response"
    assert "'boom'" in errors[0]["message"]
    assert errors[1]["plugin"] == "sleepy" and "call timeout" in errors[1]["message"]
