"""Microbenchmark fixtures: every workload runs on both kernel implementations.

``codec_impl`` is parametrized over the pure-Python twin (``python``) and the compiled
module (``native``); a workload puts both rows in one pytest-benchmark ``group`` so they
sit together in the table. At the end of a run a short summary gives, per group, the
native and python medians and the speedup.

    .venv/bin/pytest bench --benchmark-only
"""

from __future__ import annotations

from collections import defaultdict
from types import ModuleType
from typing import Any

import pytest
from implementations import IMPL_PARAMS, IMPLEMENTATIONS, load_kernel

# What APISIX sends: lower-cased names, one entry per value.
REQUEST_HEADERS = [
    ("host", "api.example.com"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    ("accept", "application/json, text/plain, */*"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-US,en;q=0.9"),
    ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx"),
    ("content-type", "application/json"),
    ("content-length", "348"),
    ("cookie", "session=4f2a9c; theme=dark"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-for", "10.0.0.12"),
    ("x-request-id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
]


@pytest.fixture(params=IMPL_PARAMS)
def codec_impl(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("codec", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def headers_impl(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("headers", request.param)


@pytest.fixture(params=IMPL_PARAMS)
def bodyrewrite_impl(request: pytest.FixtureRequest) -> ModuleType:
    return load_kernel("bodyrewrite", request.param)


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
