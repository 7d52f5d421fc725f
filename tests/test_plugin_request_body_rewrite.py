"""request-body-rewrite: a Rewrite carrying the configured body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.request_body_rewrite import RequestBodyRewrite
from a6runner.testing import Client, run_runner


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def test_new_body_goes_upstream(apisix: Client) -> None:
    token = apisix.prepare_conf([("request-body-rewrite", {"new_body": '{"hello": "☃"}'})])
    reply = apisix.http_req_call(token, method="POST", body=b"original")
    assert reply.action == "rewrite"
    assert reply.body == '{"hello": "☃"}'.encode()
    assert (reply.path, reply.headers, reply.args, reply.resp_headers) == (None, [], [], [])
    assert reply.asked == []  # the original body is never fetched


@pytest.mark.parametrize("conf", [{"new_body": ""}, {}], ids=["empty", "absent"])
def test_empty_new_body_does_nothing(apisix: Client, conf: object) -> None:
    token = apisix.prepare_conf([("request-body-rewrite", conf)])
    assert apisix.http_req_call(token, method="POST", body=b"original").action == "none"


def test_later_plugins_still_run(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [("request-body-rewrite", {"new_body": "x"}), ("proxy-rewrite", {"uri": "/new"})]
    )
    reply = apisix.http_req_call(token, path="/old")
    assert (reply.action, reply.body, reply.path) == ("rewrite", b"x", "/new")


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"new_body": 5}, r"new_body: must be a string \(got a number\)"),
        ("x", "must be a JSON object"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        RequestBodyRewrite().parse_conf(json.dumps(conf).encode())
    token = apisix.prepare_conf([("request-body-rewrite", conf)])
    assert apisix.http_req_call(token).action == "none"
