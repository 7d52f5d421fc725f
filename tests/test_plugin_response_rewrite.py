"""response-rewrite: status, headers and body of the upstream response."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.response_rewrite import ResponseRewrite
from a6runner.testing import Client, run_runner

UPSTREAM_HEADERS = [
    ("content-type", "application/json"),
    ("x-upstream", "kept"),
    ("set-cookie", "a=1"),
    ("set-cookie", "b=2"),
]


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def rewrite(apisix: Client, conf: object, body: bytes = b"", status: int = 200):  # type: ignore[no-untyped-def]
    token = apisix.prepare_conf([("response-rewrite", conf)])
    return apisix.http_resp_call(token, status=status, headers=UPSTREAM_HEADERS, body=body)


def test_empty_conf_sets_the_runner_header_and_keeps_the_rest(apisix: Client) -> None:
    reply = rewrite(apisix, {}, body=b"upstream")
    assert reply.status == 0  # unchanged
    assert reply.body is None
    # APISIX replaces the upstream headers with the reply's: all of them are sent.
    assert reply.headers == [*UPSTREAM_HEADERS, ("X-Resp-A6-Runner", "Python")]
    assert reply.asked == []  # no filters: the body is never fetched


def test_configured_status_is_honoured(apisix: Client) -> None:
    reply = rewrite(apisix, {"status": 404})
    assert reply.status == 404
    assert reply.header("content-type") == "application/json"
    assert reply.header("X-Resp-A6-Runner") == "Python"


def test_configured_headers_are_set(apisix: Client) -> None:
    reply = rewrite(apisix, {"headers": {"X-Upstream": "replaced", "X-New": "1"}})
    assert reply.header_values("x-upstream") == ["replaced"]
    assert reply.header("x-new") == "1"
    assert reply.header("content-type") == "application/json"
    assert reply.header_values("set-cookie") == ["a=1", "b=2"]


def test_configured_header_can_override_the_runner_header(apisix: Client) -> None:
    reply = rewrite(apisix, {"headers": {"x-resp-a6-runner": "custom"}})
    assert reply.header_values("X-Resp-A6-Runner") == ["custom"]


def test_body_without_filters_is_the_new_body(apisix: Client) -> None:
    reply = rewrite(apisix, {"body": "replaced ☃"}, body=b"upstream")
    assert reply.body == "replaced ☃".encode()
    assert reply.header("content-type") == "application/json"
    assert reply.asked == []


@pytest.mark.parametrize(
    "scope, expected", [("once", b"b-a-a"), ("global", b"b-b-b"), (None, b"b-a-a")]
)
def test_filter_scope(apisix: Client, scope: str | None, expected: bytes) -> None:
    f = {"regex": "a", "replace": "b"}
    if scope is not None:
        f["scope"] = scope
    reply = rewrite(apisix, {"filters": [f]}, body=b"a-a-a")
    assert reply.body == expected
    assert reply.asked == [("resp_body", None)]
    assert reply.header("content-type") == "application/json"
    assert reply.header("X-Resp-A6-Runner") == "Python"


def test_filters_apply_in_order(apisix: Client) -> None:
    filters = [
        {"regex": "cat", "scope": "global", "replace": "dog"},
        {"regex": "dog", "scope": "once", "replace": "wolf"},
    ]
    reply = rewrite(apisix, {"filters": filters}, body=b"cat cat")
    assert reply.body == b"wolf dog"


def test_group_references(apisix: Client) -> None:
    filters = [
        {"regex": r"(\w+)@(\w+)\.org", "scope": "global", "replace": "$2 at ${1}"},
        {"regex": r"(?P<n>\d+)", "scope": "once", "replace": "#$n$$"},
    ]
    reply = rewrite(apisix, {"filters": filters}, body=b"ann@apache.org, bob@python.org 42")
    assert reply.body == b"apache at ann, python at bob #42$"


def test_no_match_leaves_the_body_unchanged(apisix: Client) -> None:
    conf = {
        "status": 201,
        "body": "ignored with filters",
        "filters": [{"regex": "zzz", "replace": "y"}],
    }
    reply = rewrite(apisix, conf, body=b"upstream body")
    assert reply.body is None
    assert reply.status == 201
    assert reply.header("X-Resp-A6-Runner") == "Python"
    assert reply.asked == [("resp_body", None)]


def test_one_filter_matching_is_enough(apisix: Client) -> None:
    filters = [{"regex": "zzz", "replace": "y"}, {"regex": "body", "replace": "BODY"}]
    reply = rewrite(apisix, {"filters": filters}, body=b"upstream body")
    assert reply.body == b"upstream BODY"


def test_new_body_drops_validators_but_not_content_type(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [("response-rewrite", {"filters": [{"regex": "a", "replace": "b"}]})]
    )
    headers = [("content-type", "text/html"), ("etag", '"v1"'), ("content-length", "1")]
    reply = apisix.http_resp_call(token, headers=headers, body=b"a")
    assert reply.body == b"b"
    assert reply.header("content-type") == "text/html"
    assert reply.header("etag") is None and reply.header("content-length") is None


@pytest.mark.slow
def test_one_mebibyte_body_with_many_matches(apisix: Client) -> None:
    body = (b"item-0042 value; " * 70_000)[: 1 << 20]
    filters = [{"regex": r"item-(\d+)", "scope": "global", "replace": "ITEM<$1>"}]
    reply = rewrite(apisix, {"filters": filters}, body=body)
    assert reply.body == re.sub(rb"item-(\d+)", rb"ITEM<\1>", body)
    assert reply.body is not None and reply.body.count(b"ITEM<0042>") > 60_000


def test_no_request_phase(apisix: Client) -> None:
    token = apisix.prepare_conf([("response-rewrite", {"status": 500, "body": "x"})])
    assert apisix.http_req_call(token).action == "none"


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"filters": [{"regex": "(", "replace": "x"}]}, "filter"),
        ({"filters": [{"regex": "a", "scope": "sometimes", "replace": "x"}]}, "filter"),
        ({"filters": [{"replace": "x"}]}, r"filters\[0\]"),
        ({"filters": [{"regex": 5}]}, "filter"),
        ({"filters": {"regex": "a"}}, r"filters: must be a list \(got an object\)"),
        ({"status": "200"}, "status"),
        ({"status": -1}, "status"),
        ({"status": 1000}, "status"),
        ({"headers": {"X-A": 1}}, "headers"),
        ({"headers": ["X-A"]}, "headers"),
        ({"body": 5}, "body"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        ResponseRewrite().parse_conf(json.dumps(conf).encode())
    reply = rewrite(apisix, conf, body=b"a")
    assert (reply.status, reply.headers, reply.body) == (0, [], None)


@pytest.mark.parametrize("status", [1, 99])
def test_a_status_between_0_and_100_is_rejected(status: int) -> None:
    with pytest.raises(ConfError, match=r"status: must be 0 \(unchanged\) or an integer in 100"):
        ResponseRewrite().parse_conf(json.dumps({"status": status}).encode())
