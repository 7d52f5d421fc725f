"""request-validation: content type (nginx var) and body (ExtraInfo) checks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.request_validation import RequestValidation
from a6runner.testing import Client, Reply, run_runner


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def call(
    apisix: Client,
    conf: object,
    *,
    content_type: str | None = "application/json",
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    token = apisix.prepare_conf([("request-validation", conf)])
    return apisix.http_req_call(
        token,
        method="POST",
        headers=headers or [("host", "h")],
        vars={"content_type": content_type},
        body=body,
    )


def assert_refused(reply: Reply, message: str, status: int = 400) -> None:
    assert (reply.action, reply.status) == ("stop", status)
    assert reply.header("content-type") == "application/json"
    assert reply.body is not None and json.loads(reply.body) == {"message": message}


JSON_ONLY = {"allowed_content_types": ["application/json", "text/*"]}


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "text/plain", "text/csv"],
)
def test_allowed_content_types(apisix: Client, content_type: str) -> None:
    reply = call(apisix, JSON_ONLY, content_type=content_type)
    assert reply.action == "none"
    assert reply.asked == [("var", "content_type")]  # the body is not needed


def test_other_content_type_is_refused(apisix: Client) -> None:
    reply = call(apisix, JSON_ONLY, content_type="application/xml; charset=utf-8")
    assert_refused(reply, "content type application/xml is not allowed")


def test_missing_content_type_is_refused(apisix: Client) -> None:
    assert_refused(call(apisix, JSON_ONLY, content_type=None), "a content type is required")


def test_max_body_bytes(apisix: Client) -> None:
    conf = {"max_body_bytes": 10}
    ok = call(apisix, conf, body=b"0123456789")
    assert ok.action == "none"
    assert ok.asked == [("req_body", None)]
    assert_refused(call(apisix, conf, body=b"0123456789A"), "request body is larger than 10 bytes")


def test_declared_length_over_the_limit_is_refused_without_fetching_the_body(
    apisix: Client,
) -> None:
    reply = call(apisix, {"max_body_bytes": 10}, headers=[("content-length", "11")], body=b"x" * 11)
    assert_refused(reply, "request body is larger than 10 bytes")
    assert reply.asked == []


def test_max_body_bytes_zero_allows_only_an_empty_body(apisix: Client) -> None:
    assert call(apisix, {"max_body_bytes": 0}).action == "none"
    assert_refused(
        call(apisix, {"max_body_bytes": 0}, body=b"x"), "request body is larger than 0 bytes"
    )


FIELDS = {"required_json_fields": ["name", "email"]}


def test_required_fields_present(apisix: Client) -> None:
    reply = call(apisix, FIELDS, body=json.dumps({"name": "a", "email": "b", "extra": 1}).encode())
    assert reply.action == "none"
    assert reply.asked == [("req_body", None)]


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"name": "a"}', "missing required fields: email"),
        (b"{}", "missing required fields: name, email"),
        (b'{"name": "a", "email": ', "request body is not valid JSON"),
        (b"", "request body is not valid JSON"),
        (b"\xff\xfe{", "request body is not valid JSON"),
        (b'["name", "email"]', "request body must be a JSON object"),
        (b"[" * 100_000, "request body is not valid JSON"),
    ],
    ids=["one-missing", "all-missing", "truncated", "empty", "not-utf8", "array", "deep"],
)
def test_required_fields_refusals(apisix: Client, body: bytes, message: str) -> None:
    assert_refused(call(apisix, FIELDS, body=body), message)


def test_all_checks_and_a_custom_status(apisix: Client) -> None:
    conf = {**JSON_ONLY, **FIELDS, "max_body_bytes": 100, "reject_status": 422}
    good = json.dumps({"name": "a", "email": "b"}).encode()
    reply = call(apisix, conf, body=good)
    assert reply.action == "none"
    assert reply.asked == [("var", "content_type"), ("req_body", None)]
    assert_refused(
        call(apisix, conf, content_type="image/png", body=good),
        "content type image/png is not allowed",
        422,
    )
    assert_refused(
        call(apisix, conf, body=good + b" " * 100), "request body is larger than 100 bytes", 422
    )
    assert_refused(call(apisix, conf, body=b'{"name": 1}'), "missing required fields: email", 422)


def test_empty_conf_asks_nothing(apisix: Client) -> None:
    reply = call(apisix, {}, body=b"anything")
    assert (reply.action, reply.asked) == ("none", [])


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"reject_status": 302}, "reject_status"),
        ({"reject_status": 600}, "reject_status"),
        ({"reject_status": "400"}, "reject_status"),
        ({"max_body_bytes": -1}, "max_body_bytes"),
        ({"max_body_bytes": 1.5}, "max_body_bytes"),
        ({"max_body_bytes": True}, "max_body_bytes"),
        ({"required_json_fields": "name"}, "required_json_fields"),
        ({"required_json_fields": [1]}, "required_json_fields"),
        ({"allowed_content_types": ["json"]}, "allowed_content_types"),
        ({"allowed_content_types": ["application/json; charset=utf-8"]}, "allowed_content_types"),
        ({"allowed_content_types": "application/json"}, "allowed_content_types"),
    ],
)
def test_bad_conf_is_rejected_and_refused(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        RequestValidation().parse_conf(json.dumps(conf).encode())
    # a guard: a conf it rejects refuses every call before asking anything (it used to be
    # skipped, letting every request through unchecked)
    reply = call(apisix, conf, content_type="image/png", body=b"x" * 1000)
    assert (reply.action, reply.status, reply.asked) == ("stop", 503, [])
