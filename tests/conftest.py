"""Shared fixtures: every kernel test runs against both implementations.

``codec``, ``headers_mod``, ``bodyrewrite_mod`` and ``meter_mod`` are parametrized over the
implementation list in implementations.py (shared with bench/). ``without_redis`` makes
this process look as if the redis extra were not installed.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings
from implementations import IMPL_PARAMS, NO_EXTENSIONS, load_kernel

settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=IMPL_PARAMS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("codec", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def headers_mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("headers", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def bodyrewrite_mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("bodyrewrite", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def meter_mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("meter", request.param)


@pytest.fixture
def both_codecs() -> tuple[ModuleType, ModuleType]:
    """(pure, native) for differential tests; skipped in pure mode."""
    if NO_EXTENSIONS:
        pytest.skip("A6_NO_EXTENSIONS is set")
    return load_kernel("codec", "python"), load_kernel("codec", "native")


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the redis extra were not installed, for this test. An import of it that an
    earlier test started in the background (a Redis conf starts one: _limits.load_redis)
    ends first: hiding the modules under it would leave a half-imported a6runner._redis
    behind for the tests after this one."""
    from a6runner._limits import load_redis

    load_redis().result()
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "a6runner._redis", raising=False)
