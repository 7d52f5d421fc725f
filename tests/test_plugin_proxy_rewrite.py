"""proxy-rewrite: path, host, headers and args sent upstream (a minimal Rewrite)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.proxy_rewrite import ProxyRewrite
from a6runner.testing import Client, Reply, run_runner

HEADERS = [("host", "gateway"), ("x-a", "1"), ("x-b", "2"), ("x-c", "3")]
ARGS = [("a", "1"), ("b", "2"), ("c", "3"), ("flag", None)]


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def call(apisix: Client, conf: object, path: str = "/old") -> Reply:
    token = apisix.prepare_conf([("proxy-rewrite", conf)])
    return apisix.http_req_call(token, path=path, headers=HEADERS, args=ARGS)


def grouped(entries: list[tuple[str, str | None]], fold: bool) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = defaultdict(list)
    for name, value in entries:
        out[name.lower() if fold else name].append(value)
    return dict(out)


def test_uri(apisix: Client) -> None:
    reply = call(apisix, {"uri": "/new/path"})
    assert (reply.action, reply.path) == ("rewrite", "/new/path")
    assert (reply.headers, reply.args, reply.resp_headers, reply.body) == ([], [], [], None)


def test_same_uri_is_no_change(apisix: Client) -> None:
    assert call(apisix, {"uri": "/old"}, path="/old").action == "none"


def test_host(apisix: Client) -> None:
    reply = call(apisix, {"host": "backend.internal"})
    assert reply.path is None
    assert grouped(reply.headers, fold=True) == {"host": ["backend.internal"]}


def test_headers_remove_set_add(apisix: Client) -> None:
    conf = {
        "headers": {
            "set": {"X-A": "new", "X-New": "n"},
            "add": {"X-B": "more"},
            "remove": ["x-c", "x-absent"],
        }
    }
    reply = call(apisix, conf)
    assert reply.action == "rewrite" and reply.path is None and reply.args == []
    # APISIX sets each header entry: the values of a multi-valued header come joined.
    assert grouped(reply.headers, fold=True) == {
        "x-c": [None],
        "x-a": ["new"],
        "x-new": ["n"],
        "x-b": ["2, more"],
    }


def test_remove_then_set_replaces(apisix: Client) -> None:
    reply = call(apisix, {"headers": {"remove": ["x-a"], "add": {"x-a": "only"}}})
    assert grouped(reply.headers, fold=True) == {"x-a": ["only"]}


def test_args_remove_set_add(apisix: Client) -> None:
    conf = {"args": {"set": {"a": "9"}, "add": {"b": "3", "d": "4"}, "remove": ["c", "flag"]}}
    reply = call(apisix, conf)
    assert reply.action == "rewrite" and reply.path is None and reply.headers == []
    assert grouped(reply.args, fold=False) == {
        "c": [None],
        "flag": [None],
        "a": ["9"],
        "b": ["2", "3"],
        "d": ["4"],
    }


def test_args_are_case_sensitive(apisix: Client) -> None:
    reply = call(apisix, {"args": {"remove": ["A"]}})
    assert reply.action == "none"


def test_everything_at_once(apisix: Client) -> None:
    conf = {
        "uri": "/v2/items",
        "host": "api.internal",
        "headers": {"set": {"x-a": "1b"}},
        "args": {"add": {"page": "2"}},
    }
    reply = call(apisix, conf)
    assert reply.path == "/v2/items"
    assert grouped(reply.headers, fold=True) == {"host": ["api.internal"], "x-a": ["1b"]}
    assert reply.args == [("page", "2")]


@pytest.mark.parametrize(
    "conf",
    [{}, {"headers": {"remove": ["x-absent"]}, "args": {"set": {"a": "1"}}}],
    ids=["empty", "no-effect"],
)
def test_nothing_changed_is_no_action(apisix: Client, conf: object) -> None:
    assert call(apisix, conf).action == "none"


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"uri": "relative"}, "uri: must be a path"),
        ({"uri": "/a?b=1"}, "uri: must be a path"),
        ({"uri": ""}, "uri"),
        ({"uri": 5}, "uri"),
        ({"host": ""}, "host"),
        ({"host": " spaced "}, "host"),
        ({"host": 5}, "host"),
        ({"headers": {"X-Foo": "bar"}}, "unknown keys"),
        (
            {"headers": ["x"]},
            r"headers: must be an object with set, add and/or remove \(got an array\)",
        ),
        ({"headers": {"set": {"X-A": 1}}}, r"headers\.set"),
        ({"headers": {"set": {"": "x"}}}, r"headers\.set"),
        ({"headers": {"add": ["X-A"]}}, r"headers\.add"),
        ({"headers": {"remove": "x-a"}}, r"headers\.remove"),
        ({"args": {"remove": [1]}}, r"args\.remove"),
        ({"args": {"set": {"a": None}}}, r"args\.set"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        ProxyRewrite().parse_conf(json.dumps(conf).encode())
    assert call(apisix, conf).action == "none"
