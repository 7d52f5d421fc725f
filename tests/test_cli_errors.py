"""The command line reads well: every error names the path, flag or module it is about and
says what to do, with the exit status README documents (1 runtime/config, 2 usage/plugin
load), never a traceback; --help is clean for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from a6runner._paths import MAX_SOCKET_PATH, path_error, socket_path_error
from a6runner.testing import spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))


def a6(
    *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m a6runner ARGS`` with APISIX_LISTEN_ADDRESS unset unless ``env`` sets it."""
    full_env = {k: v for k, v in os.environ.items() if k != "APISIX_LISTEN_ADDRESS"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "a6runner", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def failed(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_a_missing_socket_folder_is_named(tmp_path: Path) -> None:
    sock = tmp_path / "nodir" / "deeper" / "x.sock"
    err = failed(a6("run", "--listen", f"unix:{sock}"), 1)
    assert f"cannot create the socket {sock}" in err
    assert f"the folder {tmp_path / 'nodir'} does not exist" in err
    assert "--listen" in err and "Errno" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_socket_folder_names_the_path_and_the_user(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    err = failed(a6("run", "--listen", f"unix:{folder}/x.sock"), 1)
    assert f"cannot create the socket {folder}/x.sock: permission denied" in err
    assert "uid" in err and str(folder) in err


def test_path_errors_say_what_is_wrong(tmp_path: Path) -> None:
    """Each errno a socket or log path meets has its own explanation (root cannot meet
    EACCES by hand: the messages are checked directly)."""
    path = str(tmp_path / "x.sock")
    denied = str(path_error(PermissionError(13, "Permission denied"), path, "the socket", "h"))
    assert "permission denied" in denied and f"files in {tmp_path}" in denied
    assert "uid" in denied
    assert "is a file, not a folder" in str(
        path_error(NotADirectoryError(20, "Not a directory"), path, "the socket", "h")
    )
    assert "read-only file system" in str(path_error(OSError(30, "Read-only"), path, "x", "h"))
    assert "is a folder" in str(path_error(IsADirectoryError(21, "Is a dir"), path, "x", "h"))
    assert "No space left" in str(path_error(OSError(28, "No space left"), path, "x", "h"))
    long_path = "/tmp/" + "x" * MAX_SOCKET_PATH
    message = str(socket_path_error(OSError("AF_UNIX path too long"), long_path))
    assert f"holds at most {MAX_SOCKET_PATH}" in message and "shorter path" in message


def test_a_socket_path_that_is_too_long_is_explained(tmp_path: Path) -> None:
    sock = tmp_path / ("s" * MAX_SOCKET_PATH)
    err = failed(a6("run", "--listen", f"unix:{sock}"), 1)
    assert "a unix socket path holds at most 107" in err


def test_a_group_the_runner_cannot_give_the_socket_to_is_explained(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may give a file to any group")
    err = failed(a6("run", "--listen", f"unix:{tmp_path}/x.sock", "--socket-group", "0"), 1)
    assert "cannot give the socket" in err and "--socket-group" in err
    assert not (tmp_path / "x.sock").exists()


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--conf-expire-time", "-5", "must be a positive number of seconds, not '-5'"),
        ("--conf-expire-time", "0", "must be a positive number of seconds, not '0'"),
        ("--conf-expire-time", "soon", "not a number of seconds: 'soon'"),
        ("--workers", "abc", "not a whole number: 'abc'"),
        ("--workers", "0", "must be at least 1, not '0'"),
        ("--max-frame-memory", "lots", "not a whole number: 'lots'"),
        ("--max-memory", "0", "must be at least 1, not '0'"),
        ("--frame-timeout", "-1", "must be >= 0 (0 turns it off), not '-1'"),
    ],
)
def test_bad_flag_values_name_the_flag(flag: str, value: str, says: str) -> None:
    err = failed(a6("run", flag, value), 2)
    assert f"argument {flag}: {says}" in err
    assert "_positive_int" not in err and "invalid" not in err
    assert "Run 'a6-runner run --help' for help." in err


def test_max_frame_memory_is_the_old_name_of_half_of_max_memory() -> None:
    from a6runner._cli import build_parser

    out = a6("run", "--help").stdout
    assert "--max-memory MIB" in out and "--frame-timeout SECONDS" in out
    assert "--max-frame-memory" not in out  # still taken, no longer listed
    parse = build_parser().parse_args
    assert parse(["run", "--max-frame-memory", "16"]).max_memory == 32 << 20
    assert parse(["run"]).max_memory == 256 << 20


def test_a_non_positive_conf_expire_time_from_python_is_refused(tmp_path: Path) -> None:
    from a6runner._errors import ConfigError
    from a6runner._settings import Settings

    with pytest.raises(ConfigError, match="--conf-expire-time must be a positive number"):
        Settings.from_env({}, f"unix:{tmp_path}/x.sock", -5)


@pytest.mark.parametrize("args", [(), ("--bogus",)])
def test_no_command_shows_the_commands(args: tuple[str, ...]) -> None:
    err = failed(a6(*args), 2)
    assert "the following arguments are required" not in err
    assert "--help" in err
    if not args:
        for command in ("run", "plugins", "call", "bench"):
            assert f"\n  {command} " in err
    else:
        assert "unrecognized arguments: --bogus" in err


def test_an_unknown_command_lists_the_known_ones() -> None:
    err = failed(a6("serve"), 2)
    assert "invalid choice: 'serve'" in err and "'run'" in err and "--help" in err


@pytest.mark.parametrize("command", [(), ("run",), ("plugins",), ("call",), ("bench",)])
def test_help_is_clean_for_every_command(command: tuple[str, ...]) -> None:
    result = a6(*command, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "``" not in out and ":mod:" not in out and ":class:" not in out
    assert out.startswith(f"usage: a6-runner{' ' if command else ''}{' '.join(command)}")
    assert "exit status" in out


@pytest.mark.parametrize("columns", ["50", "120"])
def test_help_fits_the_width_columns_gives(columns: str) -> None:
    """The formatter finds the width as shutil would ($COLUMNS first), without shutil."""
    out = a6("run", "--help", env={"COLUMNS": columns}).stdout
    lines = out.splitlines()
    flag_lines = [line for line in lines if line.lstrip().startswith("--busy-poll")]
    assert flag_lines  # the help is there
    # argparse wraps the options at COLUMNS - 2 (the description and epilog are raw)
    start = lines.index("options:")
    options = lines[
        start : next(i for i, line in enumerate(lines) if line.startswith("environment"))
    ]
    assert max(len(line) for line in options) <= int(columns) - 2
    assert max(len(line) for line in options) > int(columns) - 30  # and uses that width


def test_run_help_documents_every_flag_and_the_signals() -> None:
    out = a6("run", "--help").stdout
    assert "--log-level {debug,info,warning,error}\n" in out
    assert "the least severe lines logged" in out
    for flag in ("--log-file PATH", "--log-format {text,json}", "--reload"):
        assert flag in out
    assert "HUP" in out and "USR1" in out and "APISIX_LISTEN_ADDRESS" in out


@pytest.mark.parametrize("value", ["maybe", "2"])
@pytest.mark.parametrize("how", ["module", "script"])
def test_a_bad_a6_no_extensions_is_one_line_of_error(value: str, how: str) -> None:
    env = {**os.environ, "A6_NO_EXTENSIONS": value}
    if how == "module":
        argv = [sys.executable, "-m", "a6runner", "--version"]
    else:
        argv = [str(Path(sys.executable).with_name("a6-runner")), "--version"]
        if not os.path.exists(argv[0]):
            pytest.skip("no a6-runner script beside this interpreter")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    err = failed(result, 1)
    assert err.strip().splitlines() == [
        err.strip()
    ]  # one line: "a6-runner: error: A6_NO_EXTENSIONS=..."
    assert err.startswith(f"a6-runner: error: A6_NO_EXTENSIONS={value!r} is not understood")


def test_a_bad_a6_no_extensions_still_raises_for_library_users() -> None:
    env = {**os.environ, "A6_NO_EXTENSIONS": "maybe"}
    code = "import a6runner"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "ValueError: A6_NO_EXTENSIONS='maybe' is not understood" in result.stderr


def _plugin_package(root: Path) -> None:
    (root / "my_plugins").mkdir()
    (root / "my_plugins" / "__init__.py").write_text("")
    (root / "my_plugins" / "stamp.py").write_text(
        "from a6runner import Plugin\n\n"
        "class Stamp(Plugin):\n"
        "    name = 'stamp'\n\n"
        "    def request_filter(self, conf, req):\n"
        "        req.respond(200, 'stamped')\n"
    )


def test_plugins_module_is_found_in_the_current_folder(tmp_path: Path) -> None:
    _plugin_package(tmp_path)
    result = a6("plugins", "--no-bundled", "--plugins", "my_plugins.stamp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stamp", "module", "my_plugins.stamp"]
    # and the runner serves it, started as APISIX would (from the project folder)
    script = Path(sys.executable).with_name("a6-runner")
    command = [str(script), "run"] if script.exists() else [sys.executable, "-m", "a6runner", "run"]
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with (
            spawn_runner(["--plugins", "my_plugins.stamp"], command=command) as runner,
            runner.client() as apisix,
        ):
            token = apisix.prepare_conf([("stamp", {})])
            assert apisix.http_req_call(token).body == b"stamped"
    finally:
        os.chdir(old)


def test_a_module_that_is_nowhere_says_where_it_was_looked_for(tmp_path: Path) -> None:
    err = failed(a6("plugins", "--plugins", "not_here.stamp", cwd=tmp_path), 2)
    assert "cannot import plugin module 'not_here.stamp'" in err
    assert f"no module 'not_here' in the current folder ({tmp_path})" in err
    assert "file or folder path" in err


def test_a_plugin_module_importing_something_missing_names_both(tmp_path: Path) -> None:
    (tmp_path / "needs_more.py").write_text("import a_library_that_is_not_installed\n")
    err = failed(a6("plugins", "--plugins", "needs_more", cwd=tmp_path), 2)
    assert "cannot import plugin module 'needs_more'" in err
    assert "a_library_that_is_not_installed" in err


def test_an_unusable_log_file_is_named(tmp_path: Path) -> None:
    log_file = tmp_path / "nodir" / "runner.log"
    env = {"APISIX_LISTEN_ADDRESS": f"unix:{tmp_path}/r.sock"}
    err = failed(a6("run", "--log-file", str(log_file), env=env), 1)
    assert f"cannot create the log file {log_file}" in err and "does not exist" in err
    assert "--log-file" in err
    err = failed(a6("run", "--log-file", str(tmp_path), env=env), 1)
    assert f"cannot create the log file {tmp_path}: {tmp_path} is a folder" in err


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("-1", "must be between 0 (off) and 10000 microseconds, not '-1'"),
        ("10001", "must be between 0 (off) and 10000 microseconds, not '10001'"),
        ("0.5", "not a whole number of microseconds: '0.5'"),
        ("abc", "not a whole number of microseconds: 'abc'"),
    ],
)
def test_a_bad_busy_poll_is_refused_by_name(tmp_path: Path, value: str, says: str) -> None:
    err = failed(a6("run", "--listen", f"unix:{tmp_path}/x.sock", "--busy-poll", value), 2)
    assert f"argument --busy-poll: {says}" in err


@pytest.mark.parametrize(
    "args",
    [("plugins",), ("schema",), ("schema", "say"), ("call", "say", "--conf", '{"body": "hi"}')],
)
def test_a_reader_that_went_away_ends_the_command_quietly(args: tuple[str, ...]) -> None:
    """``a6-runner schema | head``: the pipe's reader is gone before the command writes
    (its end is closed first, so every write fails): exit 1, no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "a6runner", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr
