"""Build the Cython kernels in src/a6native/ (the rest of the metadata is in pyproject.toml).

Which files are extension modules: every ``src/a6native/NAME.pyx`` whose name does not
start with ``_`` is built as ``a6native.NAME``; ``_piece.pyx`` and ``*.pxi`` files are
pieces that a module ``include``s, and ``*.pxd`` files are declarations it ``cimport``s.
Adding a module or a piece needs no edit here; MANIFEST.in puts every source in the sdist.

The sdist carries only sources, never generated C: the C is generated here by Cython (a
build requirement), so it always matches the .pyx and the Cython release.

``A6_NO_EXTENSIONS`` (its meaning is in src/a6runner/_no_extensions.py, shared with the
runtime) = 1/true/yes: no extension is built and the wheel is py3-none-any. Otherwise a
failed compile fails the build with one message naming what is missing: pure mode is
something you ask for, never a silent fallback.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError, ExecError, PlatformError

NATIVE_DIR = "src/a6native"
COMPILER_DIRECTIVES = {
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "embedsignature": True,
}
# No DWARF debug info (-g0, after Python's own -g): the modules are several times smaller and
# compile faster; function symbols stay, so perf still names them.
COMPILE_ARGS = ["-O2", "-g0"]
PURE_HINT = "or set A6_NO_EXTENSIONS=1 to install the pure-Python implementation instead"


def _load_no_extensions() -> Any:
    """src/a6runner/_no_extensions.py, loaded by path: a6runner is not importable yet."""
    path = Path(__file__).parent / "src" / "a6runner" / "_no_extensions.py"
    spec = importlib.util.spec_from_file_location("_a6_no_extensions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def native_module_names() -> list[str]:
    pyx_files = sorted(glob.glob(f"{NATIVE_DIR}/*.pyx"))
    return [Path(p).stem for p in pyx_files if not Path(p).name.startswith("_")]


def packages() -> list[str]:
    """Everything under src/, plus the bundled plugins/ folder as a6runner.plugins (mapped
    in pyproject's package-dir): a new subpackage is found without an edit."""
    plugin_subpackages = [f"a6runner.plugins.{p}" for p in find_packages("plugins")]
    return [*find_packages("src"), "a6runner.plugins", *plugin_subpackages]


def build_failure(problem: str, remedy: str) -> BaseError:
    return BaseError(f"cannot build a6runner's compiled kernels: {problem}. {remedy}, {PURE_HINT}.")


class BuildNative(build_ext):
    """Checks the compiler and the Python headers, then cythonizes (at build time, so making
    the sdist needs no Cython and ships no C) and compiles; a failure is one message."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = True  # one compiler process per core

    def build_extensions(self) -> None:
        compiler_command = getattr(self.compiler, "compiler_so", None)
        if compiler_command and shutil.which(compiler_command[0]) is None:
            source = " (from $CC)" if os.environ.get("CC") else ""
            raise build_failure(
                f"the C compiler {compiler_command[0]!r}{source} was not found",
                "Install one (Debian/Ubuntu: apt install gcc python3-dev)",
            )
        python_h = Path(sysconfig.get_path("include")) / "Python.h"
        if not python_h.exists():
            raise build_failure(
                f"the Python headers were not found (no {python_h})",
                "Install them (Debian/Ubuntu: apt install python3-dev)",
            )
        self._cythonize()
        try:
            super().build_extensions()
        except (CCompilerError, ExecError, PlatformError) as exc:
            raise build_failure(
                f"the C compile failed ({exc}; the compiler's output is above)",
                "Check that gcc and the Python headers work (Debian/Ubuntu: apt install gcc "
                "python3-dev)",
            ) from exc

    def _cythonize(self) -> None:
        try:
            from Cython.Build import cythonize
        except ImportError:
            raise build_failure(
                "Cython is not installed in the build environment",
                "Build with build isolation (the default of pip and python -m build), "
                "or pip install 'Cython>=3.0.10,<4'",
            ) from None
        generated = cythonize(
            self.extensions,
            language_level=3,
            compiler_directives=COMPILER_DIRECTIVES,
            force=bool(self.force),
            quiet=True,
        )
        for extension, with_c_sources in zip(self.extensions, generated, strict=True):
            extension.sources = with_c_sources.sources  # keeps setuptools' own attributes


def native_extensions() -> list[Extension]:
    return [
        Extension(f"a6native.{name}", [f"{NATIVE_DIR}/{name}.pyx"], extra_compile_args=COMPILE_ARGS)
        for name in native_module_names()
    ]


def pure_build() -> bool:
    try:
        return bool(_load_no_extensions().pure_requested())
    except ValueError as exc:  # a value that is neither yes nor no: one line, no traceback
        raise SystemExit(f"error: {exc}") from None


if pure_build():
    # A build folder of its own: a compiled module left in build/lib by an earlier native
    # build must never end up in a py3-none-any wheel.
    setup(packages=packages(), options={"build": {"build_base": "build/pure"}})
else:
    setup(packages=packages(), ext_modules=native_extensions(), cmdclass={"build_ext": BuildNative})
