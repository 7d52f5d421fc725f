"""Conf values never reach the log: a conf that fails validation is logged by plugin
name, field and what is wrong, never with the value. Every bundled plugin gets a bad conf
carrying a secret, over the real socket; the runner's whole log must not contain it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a6runner import ConfError, Plugin
from a6runner.testing import spawn_runner

SECRET = "Bearer s3cr3t-7f9a2c"
LEAKY = str(Path(__file__).with_name("leaky_plugins.py"))

# (plugin, bad conf carrying the secret, what the log line must say instead)
BAD_CONFS = [
    ("say", {"body": {"authorization": SECRET}}, "body: must be a string (got an object)"),
    ("fault-injection", {"http_status": SECRET}, "http_status: must be an integer in 200..999"),
    ("fault-injection", {"http_status": 500, "body": [SECRET]}, "body: must be a string"),
    ("limit-req", {"rate": SECRET, "burst": 1}, "rate must be a finite number"),
    ("request-body-rewrite", {"new_body": [SECRET]}, "new_body: must be a string"),
    (
        "response-rewrite",
        {"headers": {"Authorization": [SECRET]}},
        "headers[…]: must be a string (got an array)",
    ),
    ("response-rewrite", {"filters": [{"regex": SECRET + "(("}]}, "filters[0].regex: does"),
    ("response-rewrite", {"filters": [{"regex": "a", "scope": SECRET}]}, "filters[0].scope"),
    ("response-rewrite", {"status": SECRET}, "status: must be an integer in 0..999"),
    ("ip-restriction", {"whitelist": [SECRET]}, "whitelist[0]: not an IP address or CIDR"),
    ("ip-restriction", {"whitelist": ["10.0.0.0/8"], "message": [SECRET]}, "message: must be"),
    ("request-id", {"header_name": SECRET}, "header_name: must be a valid header name"),
    ("request-id", {"algorithm": SECRET}, "algorithm: must be one of"),
    ("proxy-rewrite", {"uri": SECRET}, "uri: must be a path starting with /"),
    (
        "proxy-rewrite",
        {"headers": {"set": {"Authorization": [SECRET]}}},
        "headers.set[…]: must be a string (got an array)",
    ),
    ("request-validation", {"allowed_content_types": [SECRET]}, "allowed_content_types[0]"),
    ("request-validation", {"max_body_bytes": SECRET}, "max_body_bytes: must be an integer"),
    ("limit-count", {"count": SECRET, "time_window": 60}, "count must be an integer"),
    (
        "limit-count",
        {"count": 1, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1",
         "redis_password": 42, "redis_username": SECRET, "redis_port": "x"},
        "conf entry 'limit-count' skipped",
    ),
    ("leaky", {"token": SECRET}, "its plugin raised ValueError (message not logged"),
]  # fmt: skip


GUARDS = ("ip-restriction", "request-validation")  # a bad conf of theirs refuses its calls


def test_no_conf_value_reaches_the_log() -> None:
    with spawn_runner(["--plugins", LEAKY]) as runner, runner.client() as apisix:
        for name, conf, _ in BAD_CONFS:
            token = apisix.prepare_conf([(name, conf), ("say", {"body": "ok"})])
            reply = apisix.http_req_call(token)
            if name in GUARDS:
                assert (reply.action, reply.status) == ("stop", 503)
            else:
                assert reply.body == b"ok"  # that entry skipped, not the conf
        # a conf that is not even JSON, with the secret in it
        token = apisix.prepare_conf([("say", '{"body": "' + SECRET), ("say", {"body": "ok"})])
        assert apisix.http_req_call(token).body == b"ok"
        log = runner.log()
    assert "s3cr3t" not in log
    for name, _, said in BAD_CONFS:
        outcome = "rejected" if name in GUARDS else "skipped"
        assert any(f"conf entry {name!r} {outcome}" in ln and said in ln for ln in log.splitlines())
    assert "conf entry 'say' skipped: is not valid JSON: Unterminated string" in log


def test_at_debug_level_a_plain_exception_message_is_shown() -> None:
    args = ["--plugins", LEAKY, "--log-level", "debug"]
    with spawn_runner(args) as runner, runner.client() as apisix:
        apisix.prepare_conf([("leaky", {"token": "visible-on-purpose"})])
        assert "ValueError: cannot use visible-on-purpose" in runner.log()


class _Demo(Plugin):
    name = "demo"


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ConfError("whole conf is wrong"), "whole conf is wrong"),
        (ConfError("a.b", "must be a list"), "a.b: must be a list"),
        (
            ConfError("a.b", "must be a list", got={"k": SECRET}),
            "a.b: must be a list (got an object)",
        ),
        (ConfError("a", "must be text", got=1.5), "a: must be text (got a number)"),
        (ConfError("a", "must be text", got=object()), "a: must be text (got another value)"),
    ],
)
def test_conf_error_keeps_the_kind_of_value_never_the_value(error: ConfError, text: str) -> None:
    assert str(error) == text and SECRET not in repr(error.args) and SECRET not in str(error)


def test_conf_error_takes_no_other_keyword() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        ConfError("a", "b", value=SECRET)  # type: ignore[call-arg]


def test_the_default_parse_conf_reports_json_errors_without_the_document() -> None:
    with pytest.raises(ConfError) as caught:
        _Demo().parse_conf(json.dumps({"k": SECRET}).encode()[:-1])
    assert SECRET not in str(caught.value) and str(caught.value).startswith("is not valid JSON")
    with pytest.raises(ConfError, match=r"is not valid JSON$"):
        _Demo().parse_conf(b'{"k": "\xff"}')
