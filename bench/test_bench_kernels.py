"""Microbenchmarks of the header multi-map and the regex body rewriter, native vs pure.

Each workload runs once per implementation under the same ``group``, so the rows pair up:
    .venv/bin/pytest bench/test_bench_kernels.py --benchmark-only
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from conftest import REQUEST_HEADERS

# -- header mutation -----------------------------------------------------------------------


def mutate_headers(module: ModuleType) -> Any:
    """A plugin's typical touch: read three headers, set two, delete one, add one."""
    headers = module.MultiMap(REQUEST_HEADERS)
    headers.get("Authorization")
    headers.get("x-request-id")
    headers.get("x-tenant")
    headers.set("x-forwarded-for", "203.0.113.7")
    headers.set("X-User-Id", "42")
    headers.delete("cookie")
    headers.add("x-trace", "on")
    return headers.changes()


@pytest.mark.benchmark(group="headers: build 12, get 3, set 2, delete 1, add 1, changes()")
def test_header_mutation(benchmark: Any, headers_impl: ModuleType) -> None:
    changes = benchmark(mutate_headers, headers_impl)
    assert changes == [
        ("x-forwarded-for", "203.0.113.7"),
        ("X-User-Id", "42"),
        ("cookie", None),
        ("x-trace", "on"),
    ]


@pytest.mark.benchmark(group="headers: build 12 and read 3 (no change)")
def test_header_read_only(benchmark: Any, headers_impl: ModuleType) -> None:
    def read(module: ModuleType) -> Any:
        headers = module.MultiMap(REQUEST_HEADERS)
        headers.get("authorization")
        headers.get("Content-Type")
        headers.get("x-tenant")
        return headers.changes()

    assert benchmark(read, headers_impl) == []


# -- regex body rewrite --------------------------------------------------------------------

# A realistic response-rewrite conf: a global word replacement that keeps the matched
# word through a named group, and a once replacement of the page title.
FILTERS = [
    (r"\b(?P<product>APISIX)\b", "global", "Apache ${product}"),
    (r"<title>[^<]*</title>", "once", "<title>Rewritten</title>"),
]
WORDS = (
    b"gateway route upstream plugin request response header body latency the of and to "
    b"a in for is on that with as it by"
).split()


def html_body(size: int) -> bytes:
    """An HTML page of ``size`` bytes where about one word in 30 is APISIX."""
    rng = random.Random(size)
    parts = [b"<html><head><title>Status page</title></head><body><p>"]
    length = len(parts[0])
    while length < size:
        word = b"APISIX" if rng.random() < 1 / 30 else rng.choice(WORDS)
        parts.append(word + (b".</p>\n<p>" if rng.random() < 0.05 else b" "))
        length += len(parts[-1])
    return b"".join(parts)[:size]


BODY_4K = html_body(4 * 1024)
BODY_1M = html_body(1024 * 1024)


def _check(result: bytes | None, body: bytes) -> None:
    assert result is not None
    assert result.count(b"Apache APISIX") == body.count(b"APISIX")
    assert b"<title>Rewritten</title>" in result


@pytest.mark.benchmark(group="bodyrewrite: 4 KiB body, 1 global group filter + 1 once")
def test_rewrite_4k(benchmark: Any, bodyrewrite_impl: ModuleType) -> None:
    rewriter = bodyrewrite_impl.BodyRewriter(FILTERS)
    _check(benchmark(rewriter.rewrite, BODY_4K), BODY_4K)


@pytest.mark.benchmark(group="bodyrewrite: 1 MiB body, 1 global group filter + 1 once")
def test_rewrite_1m(benchmark: Any, bodyrewrite_impl: ModuleType) -> None:
    rewriter = bodyrewrite_impl.BodyRewriter(FILTERS)
    _check(benchmark(rewriter.rewrite, BODY_1M), BODY_1M)


# The same word replacement without \b: re then finds candidates with its fast literal
# prefix scan, so what is left is the per-match cost of expanding the template.
GROUP_ONLY_FILTERS = [(r"(?P<product>APISIX)", "global", "Apache ${product}")]


@pytest.mark.benchmark(group="bodyrewrite: 4 KiB body, 1 global group filter, no \\b")
def test_rewrite_4k_per_match_cost(benchmark: Any, bodyrewrite_impl: ModuleType) -> None:
    rewriter = bodyrewrite_impl.BodyRewriter(GROUP_ONLY_FILTERS)
    result = benchmark(rewriter.rewrite, BODY_4K)
    assert result is not None and result.count(b"Apache APISIX") == BODY_4K.count(b"APISIX")


@pytest.mark.benchmark(group="bodyrewrite: 1 MiB body, 1 global group filter, no \\b")
def test_rewrite_1m_per_match_cost(benchmark: Any, bodyrewrite_impl: ModuleType) -> None:
    rewriter = bodyrewrite_impl.BodyRewriter(GROUP_ONLY_FILTERS)
    result = benchmark(rewriter.rewrite, BODY_1M)
    assert result is not None and result.count(b"Apache APISIX") == BODY_1M.count(b"APISIX")
