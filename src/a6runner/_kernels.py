"""Picks the kernel implementation once, at import: compiled (a6native) or pure Python.

Pure Python is used when ``A6_NO_EXTENSIONS`` is set to a non-empty value other than "0",
when the interpreter is not CPython, or when the compiled modules are not installed (a
warning is logged then: a normal install builds them, and the test suite fails if they
did not load). Everything else in a6runner imports the kernels from here, never directly.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Literal

# Each kernel family: (pure-Python twin, compiled module).
TWINS = {
    "codec": ("a6runner._codec_py", "a6native.codec"),
    "headers": ("a6runner._headers_py", "a6native.headers"),
    "bodyrewrite": ("a6runner._bodyrewrite_py", "a6native.bodyrewrite"),
}

_force_pure = os.environ.get("A6_NO_EXTENSIONS", "") not in ("", "0")
_native_error: ImportError | None = None

if TYPE_CHECKING:
    from . import _bodyrewrite_py as bodyrewrite
    from . import _codec_py as codec
    from . import _headers_py as headers
else:
    if not _force_pure and sys.implementation.name == "cpython":
        try:
            from a6native import bodyrewrite, codec, headers
        except ImportError as exc:  # not built: fall back, but say so
            _native_error = exc
    if _force_pure or _native_error is not None or sys.implementation.name != "cpython":
        from . import _bodyrewrite_py as bodyrewrite
        from . import _codec_py as codec
        from . import _headers_py as headers

IMPLEMENTATION: Literal["native", "python"] = (
    "native" if getattr(codec, "__file__", "").endswith((".so", ".pyd")) else "python"
)

if _native_error is not None:
    logging.getLogger("a6runner").warning(
        "compiled kernels not available (%s); running the pure-Python implementation",
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
]
