"""README's plugin guide examples run as written: the response_filter plugin and its test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(containing: str) -> str:
    """The README python block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [str(b) for b in blocks if containing in b]
    assert len(found) == 1, f"{len(found)} python blocks with {containing!r} in README.md"
    return found[0]


def test_the_response_filter_example_and_its_test_pass(tmp_path: Path) -> None:
    (tmp_path / "my_plugins").mkdir()
    plugin = python_block('name = "json-errors"')
    (tmp_path / "my_plugins" / "json_errors.py").write_text(plugin)
    test = python_block("from my_plugins.json_errors import JsonErrors")
    (tmp_path / "test_json_errors.py").write_text(test)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_json_errors.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
