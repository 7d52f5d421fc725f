"""``a6-runner`` in this process: plugin loading errors, argument and settings errors. What
is printed is what an operator sees at startup."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import a6runner
from a6runner._cli import main
from a6runner._errors import ConfigError
from a6runner._registry import _may_declare_plugins, installed_entry_points


@pytest.fixture(autouse=True)
def runner_logger_restored() -> Iterator[None]:
    """``a6-runner run`` sets up the "a6runner" logger for stderr: undo it for later tests."""
    logger = logging.getLogger("a6runner")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def plugins_output(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["plugins", "--no-bundled", "--no-entry-points", *args])
    out, err = capsys.readouterr()
    return status, out, err


PLUGIN_SOURCE = "from a6runner import Plugin\n\nclass {cls}(Plugin):\n    name = {name!r}\n{body}"


def plugin_file(folder: Path, stem: str, name: str, body: str = "", cls: str = "P") -> Path:
    path = folder / f"{stem}.py"
    path.write_text(PLUGIN_SOURCE.format(cls=cls, name=name, body=body))
    return path


def test_a_directory_of_plugins_loads_every_public_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin_file(tmp_path, "one", "one")
    plugin_file(tmp_path, "two", "two")
    plugin_file(tmp_path, "_private", "private")  # skipped: starts with "_"
    (tmp_path / "notes.txt").write_text("not Python")
    status, out, _ = plugins_output(capsys, "--plugins", str(tmp_path))
    assert status == 0
    assert out.splitlines() == [
        f"one  path {tmp_path / 'one.py'}",
        f"two  path {tmp_path / 'two.py'}",
    ]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing.py", "plugin path '{path}' does not exist"),
        (
            lambda d: (d / "plugin.txt", (d / "plugin.txt").write_text("x"))[0],
            "cannot load plugin file '{path}': not a Python module",
        ),
        (
            lambda d: (d / "empty.py", (d / "empty.py").write_text("X = 1\n"))[0],
            "path {path} defines no Plugin subclass with a name",
        ),
        (
            lambda d: plugin_file(d, "nameless", ""),
            "path {path} defines no Plugin subclass with a name",
        ),
        (
            lambda d: plugin_file(d, "numbered", 7),  # type: ignore[arg-type]
            "plugin class P (path {path}) has no name",
        ),
        (
            lambda d: plugin_file(
                d, "fails", "fails", "    def __init__(self):\n        raise OSError('no disk')\n"
            ),
            "cannot create plugin 'fails' (path {path}): OSError: no disk",
        ),
        (
            lambda d: (d / "broken.py", (d / "broken.py").write_text("1/0\n"))[0],
            "cannot load plugin file '{path}': ZeroDivisionError: division by zero",
        ),
    ],
    ids=[
        "missing",
        "not-python",
        "no-plugin",
        "empty-name",
        "name-not-str",
        "init-fails",
        "raises",
    ],
)
def test_plugin_load_errors_name_the_file_and_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, message: str
) -> None:
    path = setup(tmp_path)
    status, _, err = plugins_output(capsys, "--plugins", str(path))
    assert status == 2
    assert err == f"a6-runner: error: {message.format(path=path)}\n"


def test_an_unknown_module_is_a_load_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = plugins_output(capsys, "--plugins", "no_such_module_anywhere")
    assert status == 2
    assert "cannot import plugin module 'no_such_module_anywhere': no module" in err


def install_entry_point(
    site: Path, monkeypatch: pytest.MonkeyPatch, target: str, module_source: str
) -> None:
    dist = site / "ep_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[a6runner.plugins]\nep = {target}\n")
    (site / "ep_plugin_module.py").write_text(module_source)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ep_plugin_module", raising=False)


def test_an_entry_point_naming_a_module_registers_its_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = PLUGIN_SOURCE.format(cls="FromModule", name="from-module", body="")
    install_entry_point(tmp_path, monkeypatch, "ep_plugin_module", source)
    assert main(["plugins", "--no-bundled"]) == 0
    out = capsys.readouterr().out
    assert "from-module  entry point ep = ep_plugin_module (ep-plugin 1.0)" in out


def test_an_entry_point_naming_something_else_is_a_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_entry_point(tmp_path, monkeypatch, "ep_plugin_module:helper", "def helper(): pass\n")
    assert main(["plugins", "--no-bundled"]) == 2
    err = capsys.readouterr().err
    assert "entry point ep = ep_plugin_module:helper (ep-plugin 1.0)" in err
    assert "is neither a named Plugin subclass nor a module" in err


def _dist_info(site: Path, name: str, entry_points: str | None) -> None:
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    if entry_points is not None:
        (dist / "entry_points.txt").write_text(entry_points)


def test_importlib_metadata_is_skipped_only_when_no_distribution_can_declare_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The look ahead of importlib.metadata (it costs every process ~2 MiB) must never miss
    # a distribution that declares the group: anything it cannot see into counts as one.
    site = tmp_path / "site"
    _dist_info(site, "no_entry_points", None)
    _dist_info(site, "other_group", "[console_scripts]\nx = y:z\n")
    (site / "plain.egg-info").write_text("Metadata-Version: 2.1\n")  # a file: no entry points
    monkeypatch.setattr(sys, "path", [str(site), str(tmp_path / "missing")])
    assert not _may_declare_plugins()
    assert installed_entry_points() == ()

    _dist_info(site, "declares", "[a6runner.plugins]\nep = some_module\n")
    assert _may_declare_plugins()
    (site / "declares-1.0.dist-info" / "entry_points.txt").unlink()
    assert not _may_declare_plugins()

    (site / "old.egg").mkdir()  # an egg: importlib.metadata looks inside
    assert _may_declare_plugins()
    (site / "old.egg").rmdir()
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(site), str(archive)])
    assert _may_declare_plugins()

    class DistributionFinder:
        def find_spec(self, *args: object) -> None:
            return None

        def find_distributions(self, *args: object) -> list[object]:
            return []

    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, DistributionFinder()])
    assert _may_declare_plugins()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--socket-mode", "rw"],
        ["run", "--socket-mode", "1000"],
        ["run", "--workers", "0"],
        ["run", "--loop", "trio"],
    ],
)
def test_bad_arguments_exit_2_with_usage(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "usage: a6-runner" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_conf_expire_time_must_be_a_positive_number(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APISIX_LISTEN_ADDRESS", f"unix:{tmp_path}/r.sock")
    monkeypatch.setenv("APISIX_CONF_EXPIRE_TIME", value)
    assert main(["run", "--no-bundled", "--no-entry-points"]) == 1
    assert f"APISIX_CONF_EXPIRE_TIME must be positive, got {value!r}" in capsys.readouterr().err


def test_version_names_the_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out
    assert out.startswith("a6runner ") and f"({a6runner.implementation()} kernels" in out


def test_run_from_python_rejects_an_unknown_log_level() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        a6runner.run(listen="unix:/nonexistent/r.sock", log_level="loud")
