"""A6_NO_EXTENSIONS has one meaning everywhere, and a pure install is quiet about it.

The values are parsed by ``a6runner._kernels.pure_requested`` (setup.py loads the same
file). What an installed wheel says (a pure install: nothing but its implementation; a
broken one: a warning) is checked on the real wheels by scripts/check-dist.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from a6runner import _kernels
from a6runner._kernels import pure_requested

RUNNER = [sys.executable, "-m", "a6runner"]


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", "Yes", " 1 "])
def test_yes_values_ask_for_pure_python(value: str) -> None:
    assert pure_requested({"A6_NO_EXTENSIONS": value}) is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "FALSE", "No"])
def test_unset_empty_and_no_values_mean_native(value: str | None) -> None:
    environ = {} if value is None else {"A6_NO_EXTENSIONS": value}
    assert pure_requested(environ) is False


@pytest.mark.parametrize("value", ["2", "maybe", "on", "pure"])
def test_any_other_value_is_an_error_naming_the_choices(value: str) -> None:
    with pytest.raises(ValueError, match=r"A6_NO_EXTENSIONS=.* 1, true or yes .* 0, false or no"):
        pure_requested({"A6_NO_EXTENSIONS": value})


def _run(args: list[str], no_extensions: str | None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("A6_NO_EXTENSIONS", "PYTHONPATH")}
    if no_extensions is not None:
        env["A6_NO_EXTENSIONS"] = no_extensions
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("value", "forced_pure"), [("True", True), ("no", False)])
def test_the_runtime_reads_the_variable_the_same_way(value: str, forced_pure: bool) -> None:
    rc, out, err = _run([*RUNNER, "--version"], value)
    expected = "python" if forced_pure or _kernels._native_error is not None else "native"
    assert rc == 0 and f"({expected} kernels" in out
    assert "WARNING" not in err


def test_a_bad_value_stops_the_runner_with_the_message() -> None:
    rc, _, err = _run([*RUNNER, "--version"], "maybe")
    assert rc != 0
    assert "A6_NO_EXTENSIONS='maybe' is not understood" in err.splitlines()[-1]
