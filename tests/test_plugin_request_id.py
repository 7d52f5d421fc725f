"""request-id: keep or generate an id; send it upstream and back to the client."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.request_id import RequestId
from a6runner.testing import Client, Reply, run_runner


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def call(apisix: Client, conf: object, headers: list[tuple[str, str]] | None = None) -> Reply:
    token = apisix.prepare_conf([("request-id", conf)])
    return apisix.http_req_call(token, headers=headers)


def lower(entries: list[tuple[str, str | None]]) -> dict[str, str | None]:
    return {name.lower(): value for name, value in entries}


def test_generates_a_uuid_upstream_and_in_the_response(apisix: Client) -> None:
    reply = call(apisix, {})
    assert reply.action == "rewrite"
    request_id = lower(reply.headers)["x-request-id"]
    assert request_id is not None and uuid.UUID(request_id).version == 4
    assert lower(reply.resp_headers) == {"x-request-id": request_id}
    assert reply.path is None and reply.args == [] and reply.body is None


def test_each_request_gets_its_own_id(apisix: Client) -> None:
    token = apisix.prepare_conf([("request-id", {})])
    ids = {lower(apisix.http_req_call(token).headers)["x-request-id"] for _ in range(50)}
    assert len(ids) == 50


def test_an_incoming_id_is_kept(apisix: Client) -> None:
    reply = call(apisix, {}, headers=[("host", "h"), ("x-request-id", "abc-123")])
    assert reply.action == "rewrite"
    assert reply.headers == []  # unchanged upstream
    assert lower(reply.resp_headers) == {"x-request-id": "abc-123"}


def test_an_empty_incoming_id_is_replaced(apisix: Client) -> None:
    reply = call(apisix, {}, headers=[("x-request-id", "")])
    request_id = lower(reply.headers)["x-request-id"]
    assert request_id and uuid.UUID(request_id)


def test_not_in_response(apisix: Client) -> None:
    conf = {"include_in_response": False}
    reply = call(apisix, conf)
    assert "x-request-id" in lower(reply.headers)
    assert reply.resp_headers == []
    assert call(apisix, conf, headers=[("x-request-id", "abc")]).action == "none"


def test_custom_header_name_and_nanoid(apisix: Client) -> None:
    reply = call(apisix, {"header_name": "X-Trace-Id", "algorithm": "nanoid"})
    trace_id = lower(reply.headers)["x-trace-id"]
    assert trace_id is not None and re.fullmatch(r"[A-Za-z0-9_-]{21}", trace_id)
    assert lower(reply.resp_headers) == {"x-trace-id": trace_id}
    assert "x-request-id" not in lower(reply.headers)


def test_incoming_header_name_is_case_insensitive(apisix: Client) -> None:
    reply = call(apisix, {"header_name": "X-Trace-Id"}, headers=[("x-trace-id", "t1")])
    assert reply.headers == []
    assert lower(reply.resp_headers) == {"x-trace-id": "t1"}


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"header_name": "bad name"}, "header_name"),
        ({"header_name": ""}, "header_name"),
        ({"header_name": "X:Id"}, "header_name"),
        ({"header_name": 5}, "header_name"),
        ({"include_in_response": "yes"}, "include_in_response"),
        ({"include_in_response": 1}, "include_in_response"),
        ({"algorithm": "snowflake"}, "algorithm"),
        ({"algorithm": ["uuid"]}, "algorithm"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        RequestId().parse_conf(json.dumps(conf).encode())
    assert call(apisix, conf).action == "none"
