"""README.md is the front page: its example plugin and test run as written, it stays short,
its links lead somewhere, it says what CI runs, and its dependency table names what
pyproject.toml installs, as the full table of the site's appendix does. (The rest of what
README held lives in docs/: tests/test_doc_examples.py runs those pages' examples.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
APPENDIX = ROOT / "docs" / "appendix" / "architecture.md"
MAX_LINES = 250


def python_blocks() -> list[str]:
    return [str(b) for b in re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)]


def test_the_example_plugin_and_its_test_pass_as_written(tmp_path: Path) -> None:
    blocks = python_blocks()
    assert [b.splitlines()[0] for b in blocks] == ["# my_plugins/hello.py", "# test_hello.py"]
    for block in blocks:
        path = tmp_path / block.splitlines()[0].removeprefix("# ")
        path.parent.mkdir(exist_ok=True)
        path.write_text(block, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_hello.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_it_is_a_front_page() -> None:
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines: move text into docs/"
    example = sum(len(block.splitlines()) for block in python_blocks())
    assert example < 30, f"the plugin and its test take {example} lines"


def test_it_says_what_ci_runs() -> None:
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "`make test` is exactly what CI runs (`.ci/run`)" in README.read_text("utf-8")


def test_every_relative_link_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text("utf-8"))
    relative = [link.partition("#")[0] for link in links if "://" not in link]
    assert relative and not link_targets_missing(relative)


def link_targets_missing(paths: list[str]) -> list[str]:
    return [path for path in paths if not (ROOT / path).is_file()]


def table_packages(text: str, heading: str) -> set[str]:
    """The packages the first column of the table under ``heading`` names: the backquoted
    names before any parenthesis (``(extra `redis`)`` says where, not what)."""
    section = text.partition(heading)[2]
    table = section[: section.index("\n\n", section.index("\n|"))]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {
        normalized(name) for cell in rows for name in re.findall(r"`([^`]+)`", cell.split("(")[0])
    }


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_packages() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    requirements = list(project["build-system"]["requires"]) + list(
        project["project"]["dependencies"]
    )
    for extra in project["project"]["optional-dependencies"].values():
        requirements += extra
    names = set()
    for requirement in requirements:
        found = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", requirement)
        assert found, requirement
        name, extras = found.groups()
        if normalized(name) == "a6runner":
            continue  # an extra that names others of ours
        names.add(normalized(name))
        if name == "redis" and extras:  # redis[hiredis]: hiredis is installed too
            names.update(normalized(extra) for extra in extras.split(","))
    return names


def test_the_dependency_tables_name_what_pyproject_installs() -> None:
    readme = table_packages(README.read_text("utf-8"), "## Dependencies (and why)")
    appendix = table_packages(APPENDIX.read_text("utf-8"), "## Dependencies (and why)")
    assert readme == appendix, (
        f"only in README: {sorted(readme - appendix)}; only in the appendix: "
        f"{sorted(appendix - readme)}"
    )
    assert sorted(pyproject_packages() - readme) == []
