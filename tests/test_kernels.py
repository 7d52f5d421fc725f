"""The implementation selector: native unless asked otherwise, and it says which."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from implementations import NO_EXTENSIONS

import a6runner
from a6runner import _kernels


def test_native_kernels_loaded_in_a_normal_install() -> None:
    """A build that silently fell back to pure Python must not pass CI."""
    if NO_EXTENSIONS:
        assert a6runner.implementation() == "python"
        assert _kernels.codec.__name__ == "a6runner._codec_py"
    else:
        assert a6runner.implementation() == "native"
        assert _kernels.codec.__name__ == "a6native.codec"
        assert _kernels.headers.__name__ == "a6native.headers"
        assert _kernels.bodyrewrite.__name__ == "a6native.bodyrewrite"
        assert _kernels.meter.__name__ == "a6native.meter"


def test_public_names_come_from_the_selected_implementation() -> None:
    assert a6runner.MultiMap is _kernels.headers.MultiMap
    assert a6runner.BodyRewriter is _kernels.bodyrewrite.BodyRewriter


def _implementation_in_subprocess(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("A6_NO_EXTENSIONS", None)
    if env_value is not None:
        env["A6_NO_EXTENSIONS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import a6runner; print(a6runner.implementation())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _extension_built() -> bool:
    return importlib.util.find_spec("a6native.codec") is not None


def test_a6_no_extensions_forces_pure_python() -> None:
    assert _implementation_in_subprocess("1") == "python"


@pytest.mark.skipif(
    not _extension_built(), reason="the compiled extension is not built (a pure-only install)"
)
def test_without_a6_no_extensions_the_extension_is_used() -> None:
    assert _implementation_in_subprocess("0") == "native"
    assert _implementation_in_subprocess("") == "native"
    assert _implementation_in_subprocess(None) == "native"
