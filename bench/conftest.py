"""Microbenchmark fixtures: every workload runs on both kernel implementations.

``codec_impl`` is parametrized over the pure-Python twin (``python``) and the compiled
module (``native``); a workload puts both rows in one pytest-benchmark ``group`` so they
sit together in the table. At the end of a run a short summary gives, per group, the
native and python medians and the speedup.

    .venv/bin/pytest bench --benchmark-only
"""

from __future__ import annotations

import importlib
import os
from collections import defaultdict
from types import ModuleType
from typing import Any

import pytest

NO_EXTENSIONS = os.environ.get("A6_NO_EXTENSIONS", "") not in ("", "0")

KERNELS = {
    "codec": ("a6runner._codec_py", "a6native.codec"),
    "headers": ("a6runner._headers_py", "a6native.headers"),
    "bodyrewrite": ("a6runner._bodyrewrite_py", "a6native.bodyrewrite"),
}
IMPLEMENTATIONS = ("native", "python")
IMPL_PARAMS = [
    pytest.param("python", id="python"),
    pytest.param(
        "native",
        id="native",
        marks=pytest.mark.skipif(NO_EXTENSIONS, reason="A6_NO_EXTENSIONS is set"),
    ),
]


def load_impl(family: str, impl: str) -> ModuleType:
    pure, native = KERNELS[family]
    return importlib.import_module(native if impl == "native" else pure)


@pytest.fixture(params=IMPL_PARAMS)
def codec_impl(request: pytest.FixtureRequest) -> ModuleType:
    return load_impl("codec", request.param)


def _implementation_of(bench: Any) -> str | None:
    for value in (bench.params or {}).values():
        if value in IMPLEMENTATIONS:
            return str(value)
    return None


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    # pytest-benchmark keeps its results on this private attribute; without it, no summary.
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    benchmarks = getattr(session, "benchmarks", None)
    if not benchmarks:
        return
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in benchmarks:
        impl = _implementation_of(bench)
        if impl is not None and bench.stats:
            medians[bench.group or bench.name][impl] = bench.stats.median
    rows = [(group, pair) for group, pair in medians.items() if len(pair) == 2]
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("native vs python (medians)", sep="-")
    width = max(len(group) for group, _ in rows)
    write(f"{'group':<{width}}  {'native':>12}  {'python':>12}  {'speedup':>8}")
    for group, pair in sorted(rows):
        native, python = pair["native"], pair["python"]
        write(
            f"{group:<{width}}  {native * 1e6:>10.3f}us  {python * 1e6:>10.3f}us"
            f"  {python / native:>7.1f}x"
        )
