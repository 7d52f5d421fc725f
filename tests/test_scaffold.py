"""``a6-runner new``: names checked, a non-empty folder refused, and the whole path a user
takes — scaffold, ``pip install -e`` into a fresh venv (a6runner from a wheel of this
tree, no network, no compile), the package's own tests, ``a6-runner plugins``,
``a6-runner call``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from a6runner._cli import main

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "scaffold-check"
WHEELHOUSE = WORK / "wheelhouse"  # kept between runs: the dependencies' wheels
# what the fresh venv installs besides our wheel: the package's build and test needs
NEEDS = ("setuptools>=64", "pytest>=8", "pytest-asyncio>=0.24")


def new(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["new", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "name, said",
    [
        ("My-Auth", "is not a plugin name: use lowercase letters"),
        ("auth--x", "is not a plugin name"),
        ("auth-", "is not a plugin name"),
        ("9lives", "is not a plugin name"),
        ("import", "would make the package 'import', a Python keyword"),
        ("match", "would make the package 'match', a Python keyword"),
        ("json", "would shadow the standard library's"),
        ("a6runner", "would shadow a6runner's"),
    ],
)
def test_a_name_that_cannot_be_a_plugin_and_package_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, said: str
) -> None:
    status, out, err = new(capsys, name, str(tmp_path / "x"))
    assert (status, out) == (2, "")
    assert err.startswith("a6-runner new: error: ") and said in err
    assert not (tmp_path / "x").exists()


def test_a_folder_that_exists_and_is_not_empty_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    status, _, err = new(capsys, "auth", str(tmp_path))
    assert status == 2 and f"{tmp_path} exists and is not empty" in err
    assert os.listdir(tmp_path) == ["keep.txt"]
    status, _, err = new(capsys, "auth", str(tmp_path / "keep.txt"))
    assert status == 2 and "is not a folder" in err


def test_it_writes_the_package_into_an_empty_or_new_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = new(capsys, "team-tag", str(tmp_path))
    assert status == 0 and "pip install -e '.[test]' && pytest" in out
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        "README.md",
        "pyproject.toml",
        "src/team_tag/__init__.py",
        "tests/test_team_tag.py",
    ]
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '[project.entry-points."a6runner.plugins"]\nteam-tag = "team_tag:TeamTag"' in pyproject
    monkeypatch.chdir(tmp_path.parent)
    assert new(capsys, "other", tmp_path.name + "-b")[0] == 0
    assert (tmp_path.parent / (tmp_path.name + "-b") / "src/other/__init__.py").exists()


def test_its_tests_pass_here(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The package's tests, run against this tree's a6runner (the plugin from src/)."""
    assert new(capsys, "team-tag", str(tmp_path))[0] == 0
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


# -- the whole path, in a fresh venv ----------------------------------------------------------


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def pure_wheel(out: Path) -> Path:
    """A wheel of this tree as check-dist builds its pure one (A6_NO_EXTENSIONS=1, no build
    isolation: nothing downloaded, nothing compiled), from a copy of the tree, so a build
    running in the tree at the same time (make test's check-dist part) is not disturbed."""
    source = out / "source"
    for part in ("src", "plugins"):
        shutil.copytree(
            ROOT / part,
            source / part,
            ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__", "*.egg-info"),
        )
    for part in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / part, source / part)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"A6_NO_EXTENSIONS": "1"}
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", out, source, env=env)  # fmt: skip
    (wheel,) = out.glob("a6runner-*-py3-none-any.whl")
    return wheel


@pytest.mark.slow
def test_scaffold_install_test_list_and_call_in_a_fresh_venv(tmp_path: Path) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        out = Path(scratch)
        wheel = pure_wheel(out)
        # the dependencies' wheels, once (pip skips what the folder already has)
        run(sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
            "--dest", WHEELHOUSE, wheel, *NEEDS)  # fmt: skip
        for ours in WHEELHOUSE.glob("a6runner-*"):
            ours.unlink()  # our wheel is installed by path, never a copy from a past run
        venv = out / "venv"
        run(sys.executable, "-m", "venv", venv)
        python, bin_dir = venv / "bin" / "python", venv / "bin"
        offline = ("--no-index", "--find-links", WHEELHOUSE)
        run(python, "-m", "pip", "install", "-q", *offline, wheel)

        package = tmp_path / "geo-tag"
        run(bin_dir / "a6-runner", "new", "geo-tag", package)
        run(python, "-m", "pip", "install", "-q", *offline, "-e", f"{package}[test]")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "A6_NO_EXTENSIONS")}
        tested = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package, env=env)
        assert "5 passed" in tested
        listed = run(bin_dir / "a6-runner", "plugins", env=env)
        assert any(
            line.startswith("geo-tag ") and "entry point geo-tag = geo_tag:GeoTag" in line
            for line in listed.splitlines()
        ), listed
        answered = run(bin_dir / "a6-runner", "call", "geo-tag", "--conf", '{"value": "x"}',
                       env=env)  # fmt: skip
        assert "-> rewrite" in answered and "X-Hello: x" in answered


def test_a_folder_that_cannot_be_written_is_said(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    status, out, err = new(capsys, "auth", str(tmp_path / "a-file" / "auth"))
    assert (status, out) == (2, "") and "cannot write" in err
