"""The kernel implementations every twin test and every microbenchmark runs against.

One list for ``tests/`` and ``bench/`` (pyproject's pytest ``pythonpath`` puts ``tests/`` on
the import path of both runs): the pure-Python twin (``python``) and the compiled module
(``native``, marker ``native``). Under ``A6_NO_EXTENSIONS=1`` the native cases are skipped:
that run is about the pure runner, and the native cases ran in the normal run (where a
missing native module is a failure, see test_kernels.py).
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from a6runner._kernels import load_twin, pure_requested

NO_EXTENSIONS = pure_requested(os.environ)

IMPL_PARAMS = [
    pytest.param("python", id="python"),
    pytest.param(
        "native",
        id="native",
        marks=[
            pytest.mark.native,
            pytest.mark.skipif(NO_EXTENSIONS, reason="A6_NO_EXTENSIONS is set"),
        ],
    ),
]
IMPLEMENTATIONS = tuple(str(param.values[0]) for param in IMPL_PARAMS)


def load_kernel(family: str, impl: str) -> ModuleType:
    return load_twin(family, "native" if impl == "native" else "python")
