"""fault-injection: answers http_status/body for percentage % of the requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.fault_injection import FaultInjection
from a6runner.testing import Client, run_runner


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


@pytest.mark.parametrize("percentage", [100, None], ids=["100", "default"])
def test_percentage_100_always_answers(apisix: Client, percentage: int | None) -> None:
    conf: dict[str, object] = {"http_status": 503, "body": "down for maintenance"}
    if percentage is not None:
        conf["percentage"] = percentage
    token = apisix.prepare_conf([("fault-injection", conf)])
    for _ in range(20):
        reply = apisix.http_req_call(token)
        assert (reply.action, reply.status, reply.body) == ("stop", 503, b"down for maintenance")


def test_empty_body_answers_the_status_alone(apisix: Client) -> None:
    token = apisix.prepare_conf([("fault-injection", {"http_status": 200})])
    reply = apisix.http_req_call(token)
    assert (reply.action, reply.status, reply.body, reply.headers) == ("stop", 200, None, [])


def test_percentage_0_never_answers(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [("fault-injection", {"http_status": 500, "body": "x", "percentage": 0})]
    )
    for _ in range(20):
        assert apisix.http_req_call(token).action == "none"


def test_percentage_50_answers_some(apisix: Client) -> None:
    # 200 draws: all the same outcome has probability 2**-199.
    token = apisix.prepare_conf([("fault-injection", {"http_status": 418, "percentage": 50})])
    actions = {apisix.http_req_call(token).action for _ in range(200)}
    assert actions == {"stop", "none"}


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"http_status": 199}, "http_status"),
        ({"http_status": 100, "body": "x"}, "http_status"),
        ({"body": "no status"}, "http_status"),
        ({}, "http_status"),
        ({"http_status": "500"}, "http_status"),
        ({"http_status": 500.0}, "http_status"),
        ({"http_status": 1000}, "http_status"),
        ({"http_status": 500, "percentage": -1}, "percentage"),
        ({"http_status": 500, "percentage": 101}, "percentage"),
        ({"http_status": 500, "percentage": 50.5}, "percentage"),
        ({"http_status": 500, "percentage": True}, "percentage"),
        ({"http_status": 500, "body": 1}, "body"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        FaultInjection().parse_conf(json.dumps(conf).encode())
    token = apisix.prepare_conf([("fault-injection", conf)])
    assert apisix.http_req_call(token).action == "none"
