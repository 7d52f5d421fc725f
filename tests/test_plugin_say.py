"""say: answers the request itself (Stop) with the configured body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.say import Say
from a6runner.testing import Client, run_runner


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def test_body_is_the_answer_with_status_unset(apisix: Client) -> None:
    token = apisix.prepare_conf([("say", {"body": "hello"})])
    reply = apisix.http_req_call(token)
    assert reply.action == "stop"
    assert reply.status == 0  # unset: APISIX answers 200
    assert reply.headers == [("X-Resp-A6-Runner", "Python")]
    assert reply.body == b"hello"
    assert reply.asked == []


def test_body_is_utf8(apisix: Client) -> None:
    token = apisix.prepare_conf([("say", {"body": "héllo ☃"})])
    assert apisix.http_req_call(token).body == "héllo ☃".encode()


@pytest.mark.parametrize(
    "conf", [{"body": ""}, {}, ""], ids=["empty-body", "no-body", "empty-conf"]
)
def test_no_body_does_nothing(apisix: Client, conf: object) -> None:
    token = apisix.prepare_conf([("say", conf)])
    assert apisix.http_req_call(token).action == "none"


def test_answer_ends_the_chain(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            ("say", {"body": "first"}),
            ("say", {"body": "second"}),
            ("request-body-rewrite", {"new_body": "x"}),
        ]
    )
    reply = apisix.http_req_call(token)
    assert (reply.action, reply.body) == ("stop", b"first")


def test_a_conf_with_empty_body_lets_the_next_plugin_answer(apisix: Client) -> None:
    token = apisix.prepare_conf([("say", {}), ("say", {"body": "second"})])
    assert apisix.http_req_call(token).body == b"second"


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"body": 5}, r"body: must be a string \(got a number\)"),
        ({"body": None}, r"body: must be a string \(got null\)"),
        (["hello"], "must be a JSON object"),
        ('{"body": ', "not valid JSON"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    raw = conf if isinstance(conf, str) else json.dumps(conf)
    with pytest.raises(ConfError, match=reason):
        Say().parse_conf(raw.encode())
    token = apisix.prepare_conf([("say", conf)])
    assert apisix.http_req_call(token).action == "none"
