"""Picks the kernel implementation once, at import: compiled (a6native) or pure Python.

Pure Python is used when ``A6_NO_EXTENSIONS`` asks for it (``1``/``true``/``yes``, see
``_no_extensions``), when the interpreter is not CPython, or when the compiled modules are
not installed. A pure install (built with ``A6_NO_EXTENSIONS=1``: no compiled file in
``a6native``) says nothing here; the startup line names the implementation. Compiled files
that are there but fail to load are a broken install: that is logged as a warning (and the
test suite fails). Everything else in a6runner imports the kernels from here, never directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from ._no_extensions import pure_requested

# Each kernel family: (pure-Python twin, compiled module).
TWINS = {
    "codec": ("a6runner._codec_py", "a6native.codec"),
    "headers": ("a6runner._headers_py", "a6native.headers"),
    "bodyrewrite": ("a6runner._bodyrewrite_py", "a6native.bodyrewrite"),
    "meter": ("a6runner._meter_py", "a6native.meter"),
}


def _started_as_the_command() -> bool:
    """Whether this process is being started as ``a6-runner`` (its script, or ``python -m
    a6runner``): a setting it cannot use is then one line of error, not a traceback."""
    if os.path.basename(sys.argv[0]) == "a6-runner":
        return True
    argv = getattr(sys, "orig_argv", [])
    return sys.argv[0] == "-m" and "a6runner" in argv[argv.index("-m") + 1 :][:1]


try:
    _force_pure = pure_requested()
except ValueError as exc:
    if _started_as_the_command():  # library users get the ValueError itself
        raise SystemExit(f"a6-runner: error: {exc}") from None
    raise
_native_error: ImportError | None = None

if TYPE_CHECKING:
    from . import _bodyrewrite_py as bodyrewrite
    from . import _codec_py as codec
    from . import _headers_py as headers
    from . import _meter_py as meter
else:
    if not _force_pure and sys.implementation.name == "cpython":
        try:
            from a6native import bodyrewrite, codec, headers, meter
        except ImportError as exc:  # not built (pure install) or broken: see below
            _native_error = exc
    if _force_pure or _native_error is not None or sys.implementation.name != "cpython":
        from . import _bodyrewrite_py as bodyrewrite
        from . import _codec_py as codec
        from . import _headers_py as headers
        from . import _meter_py as meter

IMPLEMENTATION: Literal["native", "python"] = (
    "native" if getattr(codec, "__file__", "").endswith((".so", ".pyd")) else "python"
)


def _compiled_files_installed() -> bool:
    """Whether the a6native package holds any compiled module (a pure install has none);
    looked up without importing it."""
    import glob  # only on this failure path

    spec = importlib.util.find_spec("a6native")
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    return any(
        glob.glob(os.path.join(folder, pattern))
        for folder in folders
        for pattern in ("*.so", "*.pyd")
    )


if _native_error is not None and _compiled_files_installed():
    logging.getLogger("a6runner").warning(
        "compiled kernels failed to load (%s); running the pure-Python implementation. "
        "Reinstall a6runner, or install it with A6_NO_EXTENSIONS=1 to choose pure Python",
        _native_error,
    )


def load_twin(family: str, impl: Literal["native", "python"]) -> ModuleType:
    """One implementation of a kernel family, whatever this process selected (tests and
    benchmarks compare the two)."""
    pure, native = TWINS[family]
    return importlib.import_module(native if impl == "native" else pure)


def implementation() -> Literal["native", "python"]:
    """Which kernel implementation this process uses: ``"native"`` or ``"python"``."""
    return IMPLEMENTATION


__all__ = [
    "IMPLEMENTATION",
    "TWINS",
    "bodyrewrite",
    "codec",
    "headers",
    "implementation",
    "load_twin",
    "meter",
    "pure_requested",
]
