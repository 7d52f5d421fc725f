"""Shared fixtures: every kernel test runs against both implementations.

``codec``, ``headers_mod`` and ``bodyrewrite_mod`` are parametrized over the pure-Python
twin (``python``) and the compiled module (``native``, marker ``native``). Under
``A6_NO_EXTENSIONS=1`` the native cases are skipped: that run is about the pure runner,
and the native cases ran in the normal run (where a missing native module is a failure,
see test_kernels.py).
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from a6runner._kernels import load_twin, pure_requested

NO_EXTENSIONS = pure_requested(os.environ)

settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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


def load_kernel(family: str, impl: str) -> ModuleType:
    return load_twin(family, "native" if impl == "native" else "python")


@pytest.fixture(params=IMPL_PARAMS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("codec", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def headers_mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("headers", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def bodyrewrite_mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("bodyrewrite", request.param)


@pytest.fixture
def both_codecs() -> tuple[ModuleType, ModuleType]:
    """(pure, native) for differential tests; skipped in pure mode."""
    if NO_EXTENSIONS:
        pytest.skip("A6_NO_EXTENSIONS is set")
    return load_kernel("codec", "python"), load_kernel("codec", "native")
