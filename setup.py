"""Build the Cython kernels in src/a6native/.

A6_NO_EXTENSIONS=1 skips them (pure-Python install). Otherwise a failed compile fails the
build: pure mode is something you ask for, never a silent fallback.
"""

import os

from setuptools import Extension, setup

NATIVE_MODULES = ["codec", "headers", "bodyrewrite"]


def native_extensions() -> list[Extension]:
    if os.environ.get("A6_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    extensions = [
        Extension(f"a6native.{name}", [f"src/a6native/{name}.pyx"], extra_compile_args=["-O2"])
        for name in NATIVE_MODULES
    ]
    return cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )


setup(ext_modules=native_extensions())
