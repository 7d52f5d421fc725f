"""The kernels stand on their own: nothing in src/a6native imports the runtime (a6runner),
and a6runner re-exports the kernels' error classes rather than defining its own."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NO_EXTENSIONS

import a6runner
import a6runner._errors
from a6native import errors

NATIVE_SOURCES = Path(__file__).resolve().parent.parent / "src" / "a6native"
# Pure-Python modules of a6native: installed and importable in every mode.
NEUTRAL_MODULES = ["a6native", "a6native.errors", "a6native.rewrite_filters"]
COMPILED_MODULES = ["a6native.codec", "a6native.headers", "a6native.bodyrewrite", "a6native.meter"]


def _imports_in_fresh_interpreter(modules: list[str]) -> list[str]:
    """Import ``modules`` in a new interpreter; the a6runner modules it ended up loading."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'a6runner' or m.startswith('a6runner.')))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "A6_NO_EXTENSIONS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded: list[str] = ast.literal_eval(out.stdout.strip())
    return loaded


def test_neutral_modules_import_without_the_runtime() -> None:
    assert _imports_in_fresh_interpreter(NEUTRAL_MODULES) == []


@pytest.mark.native
@pytest.mark.skipif(NO_EXTENSIONS, reason="A6_NO_EXTENSIONS is set")
def test_compiled_kernels_import_without_the_runtime() -> None:
    assert _imports_in_fresh_interpreter(COMPILED_MODULES) == []


IMPORT_LINE = re.compile(r"^\s*(from|import|cimport)\s")


def test_no_kernel_source_imports_a6runner() -> None:
    """Also covers the .pyx files whose extension is not built in this install."""
    sources = sorted(
        path
        for pattern in ("*.py", "*.pyx", "*.pxd", "*.pxi", "*.pyi")
        for path in NATIVE_SOURCES.glob(pattern)
    )
    assert len(sources) > 5
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if IMPORT_LINE.match(line):
                assert "a6runner" not in line, f"{path.name}:{number}: {line.strip()}"


def test_runtime_re_exports_the_kernel_error_classes() -> None:
    for name in ("A6Error", "ProtocolError", "DecodeError", "FrameTooLarge", "ConfError"):
        assert getattr(a6runner, name) is getattr(errors, name), name
        assert getattr(a6runner._errors, name) is getattr(errors, name), name
    assert issubclass(a6runner._errors.ConfigError, errors.A6Error)
    assert issubclass(a6runner.PluginError, errors.A6Error)
