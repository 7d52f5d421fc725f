"""ExtraInfo prefetch: what a chain's plugins declare is asked in one write, before the
first filter that needs it, and answered in order; ``Reply.round_trips`` counts the
runner's round trips exactly (questions of one read are answered in one write)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import prefetch_plugins as pp
import pytest
from processes import children

from a6runner._kernels import codec
from a6runner.testing import Client, RunnerHandle, run_runner, spawn_runner

PLUGINS = str(Path(__file__).with_name("prefetch_plugins.py"))
ALL = [
    pp.ExplainsWhatIsMissing,
    pp.ReadsThreeVarsAndBody,
    pp.AlsoReadsUser,
    pp.Stops,
    pp.AwaitsFirst,
    pp.AsyncReadsDeclared,
    pp.AsksThreeAtOnce,
    pp.UndeclaredGetVar,
    pp.NeedsFromConf,
    pp.BrokenNeeds,
    pp.ReadsRespBody,
]
VARS = {"remote_addr": "10.0.0.7", "http_x_user": "ada", "request_method": "POST", "uri": "/x"}


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with run_runner(plugins=ALL) as handle:
        yield handle


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


def test_declared_vars_and_body_cost_one_round_trip(apisix: Client) -> None:
    token = apisix.prepare_conf([("reads-3-vars-and-body", {})])
    reply = apisix.http_req_call(token, vars=VARS, body=b'{"k": 1}')
    assert reply.round_trips == 1
    assert reply.asked == [
        ("var", "remote_addr"),
        ("var", "http_x_user"),
        ("var", "request_method"),
        ("req_body", None),
    ]
    got = json.loads(reply.body or b"")
    del got["pid"]
    assert got == {
        "vars": {"remote_addr": "10.0.0.7", "http_x_user": "ada", "request_method": "POST"},
        "body": 8,
    }


def test_the_whole_chain_is_asked_at_once_without_repeats(apisix: Client) -> None:
    token = apisix.prepare_conf([("also-reads-user", {}), ("reads-3-vars-and-body", {})])
    reply = apisix.http_req_call(token, vars=VARS, body=b"")
    assert reply.round_trips == 1
    assert reply.asked == [
        ("var", "http_x_user"),
        ("var", "uri"),
        ("var", "remote_addr"),
        ("var", "request_method"),
        ("req_body", None),
    ]
    assert json.loads(reply.body or b"")["body"] == 0


def test_answers_match_questions_in_order_with_a_missing_var_in_the_middle(
    apisix: Client,
) -> None:
    token = apisix.prepare_conf([("reads-3-vars-and-body", {})])
    vars_ = {"remote_addr": "10.0.0.7", "request_method": "GET"}  # no http_x_user
    reply = apisix.http_req_call(token, vars=vars_, body=b"abc")
    assert reply.round_trips == 1
    assert json.loads(reply.body or b"")["vars"] == {
        "remote_addr": "10.0.0.7",
        "http_x_user": None,
        "request_method": "GET",
    }


def test_a_body_of_a_few_mib(apisix: Client) -> None:
    body = bytes(range(256)) * (3 * 4096 + 17)  # a little over 3 MiB
    token = apisix.prepare_conf([("reads-3-vars-and-body", {})])
    reply = apisix.http_req_call(token, vars=VARS, body=body)
    assert reply.round_trips == 1 and json.loads(reply.body or b"")["body"] == len(body)


def test_no_question_when_the_chain_stops_before_the_plugin_that_needs_them(
    apisix: Client,
) -> None:
    token = apisix.prepare_conf([("stops", {}), ("reads-3-vars-and-body", {})])
    reply = apisix.http_req_call(token, vars=VARS)
    assert (reply.action, reply.status, reply.round_trips, reply.asked) == ("stop", 403, 0, [])


def test_the_prefetch_after_an_async_filter_is_one_round_trip_too(apisix: Client) -> None:
    token = apisix.prepare_conf([("awaits-first", {}), ("also-reads-user", {})])
    reply = apisix.http_req_call(token, vars=VARS)
    assert reply.round_trips == 1 and reply.asked == [("var", "http_x_user"), ("var", "uri")]
    assert reply.action == "rewrite"
    assert sorted(reply.headers) == [("x-first", "1"), ("x-seen", "ada /x")]


def test_awaiting_a_declared_value_asks_nothing_more(apisix: Client) -> None:
    token = apisix.prepare_conf([("async-reads-declared", {})])
    reply = apisix.http_req_call(token, vars={"remote_addr": "1.2.3.4", "not_declared": "z"})
    assert reply.body == b"1.2.3.4 0 z"
    # the declared pair in one round trip, the undeclared var in a second one
    assert reply.round_trips == 2
    assert reply.asked == [("var", "remote_addr"), ("req_body", None), ("var", "not_declared")]


def test_vars_sends_several_questions_in_one_write(apisix: Client) -> None:
    token = apisix.prepare_conf([("asks-three-at-once", {})])
    reply = apisix.http_req_call(token, vars={"a": "1", "c": "3"})
    assert reply.round_trips == 1
    assert reply.asked == [("var", "a"), ("var", "b"), ("var", "c")]
    assert json.loads(reply.body or b"") == [["1", None, "3"], ["3", "1"]]


def test_get_var_of_something_not_declared_fails_that_call(apisix: Client) -> None:
    token = apisix.prepare_conf([("undeclared-get-var", {})])
    assert apisix.http_req_call(token).error == "SERVICE_UNAVAILABLE"


def test_reading_what_was_not_fetched_says_what_to_declare(apisix: Client) -> None:
    token = apisix.prepare_conf([("explains-what-is-missing", {})])
    reply = apisix.http_req_call(token)
    assert reply.round_trips == 0
    assert json.loads(reply.body or b"") == [
        "var 'remote_addr' was not fetched in this call: declare it in required_vars, "
        "or await var('remote_addr')",
        "the request body was not fetched in this call: set required_body = True, or await body()",
    ]
    reply = apisix.http_resp_call(token, body=b"upstream")
    assert reply.round_trips == 0
    assert reply.body == (
        b"the response body was not fetched in this call: set required_resp_body = True, "
        b"or await body()"
    )


def test_needs_can_depend_on_the_conf(apisix: Client) -> None:
    token = apisix.prepare_conf([("needs-from-conf", {"vars": ["uri", "remote_addr"]})])
    reply = apisix.http_req_call(token, vars=VARS)
    assert reply.round_trips == 1 and json.loads(reply.body or b"") == ["/x", "10.0.0.7"]
    token = apisix.prepare_conf([("needs-from-conf", {})])
    reply = apisix.http_req_call(token, vars=VARS)
    assert reply.round_trips == 0 and reply.body == b"[]"


def test_a_plugin_whose_needs_raise_is_skipped_like_a_bad_conf(apisix: Client) -> None:
    token = apisix.prepare_conf([("broken-needs", {}), ("stops", {})])
    assert apisix.http_req_call(token).status == 403  # the chain without it


def test_response_phase_prefetches_the_upstream_body(apisix: Client) -> None:
    token = apisix.prepare_conf([("reads-resp-body", {})])
    reply = apisix.http_resp_call(token, body=b"hello", vars={"upstream_addr": "10.1.1.1:80"})
    assert reply.round_trips == 1
    assert reply.asked == [("var", "upstream_addr"), ("resp_body", None)]
    assert reply.body == b"HELLO via 10.1.1.1:80"


def test_with_workers_a_token_met_first_by_another_worker_prefetches_too() -> None:
    # The worker that did not issue the token fetches its conf from the supervisor (the
    # call becomes a task), then the chain prefetches: the call must end once, answered.
    with spawn_runner(["--workers", "2", "--plugins", PLUGINS]) as runner:
        with runner.client() as first:
            token = first.prepare_conf([("reads-3-vars-and-body", {})])
            issuer = json.loads(first.http_req_call(token, vars=VARS).body or b"")["pid"]
        other_worker_calls = 0
        for _ in range(500):  # connections land where they land: until one hits the other
            with runner.client() as apisix:
                for _ in range(2):  # the first call there fetches the conf, the next not
                    reply = apisix.http_req_call(token, vars=VARS, body=b"xy")
                    got = json.loads(reply.body or b"")
                    assert reply.round_trips == 1 and got["body"] == 2
                other_worker_calls += got["pid"] != issuer
            if other_worker_calls:
                break
        assert other_worker_calls


def test_a_prefetch_after_fetching_the_conf_has_the_call_deadline_too() -> None:
    # Kill the worker that parsed the conf: whichever worker the next call lands on
    # fetches it from the supervisor first (a task), then prefetches. Unanswered, the
    # questions must still end at the call timeout (the call is in flight all along).
    args = ["--workers", "2", "--plugins", PLUGINS, "--call-timeout", "1"]
    with spawn_runner(args) as runner:
        with runner.client() as first:
            token = first.prepare_conf([("reads-3-vars-and-body", {})])
            issuer = json.loads(first.http_req_call(token, vars=VARS).body or b"")["pid"]
        os.kill(issuer, signal.SIGKILL)
        supervisor = runner.process.pid
        deadline = time.monotonic() + 60
        while issuer in children(supervisor) or len(children(supervisor)) < 2:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.01)
        with runner.client() as apisix:
            apisix.send_raw(
                codec.build_http_req_call_req(1, token, 0, "/", [], [("host", "x")], None)
            )
            for _ in range(4):  # the questions, never answered
                assert apisix.read_frame()[0] == codec.RPC_EXTRA_INFO
            with pytest.raises(ConnectionError):
                apisix.read_frame()  # closed at the call timeout
        assert "no ExtraInfo answer within 1s (call timeout)" in runner.log()


def _call(token: int, id: int = 1) -> bytes:
    return codec.build_http_req_call_req(id, token, 0, "/", [], [("host", "x")], None)


def test_an_undecodable_answer_to_a_prefetch_is_a_bad_request_for_that_call(
    apisix: Client,
) -> None:
    token = apisix.prepare_conf([("reads-3-vars-and-body", {})])
    apisix.send_raw(_call(token))
    questions = [apisix.read_frame() for _ in range(4)]
    assert {t for t, _ in questions} == {codec.RPC_EXTRA_INFO}
    good = codec.build_extra_info_resp(b"v")
    garbage = codec.encode_frame(codec.RPC_EXTRA_INFO, b"\xff\x00garbage")
    apisix.send_raw(good + garbage + good + good)  # the second answer is not FlatBuffers
    frame_type, payload = apisix.read_frame()
    assert frame_type == codec.RPC_ERROR and codec.decode_err_resp(payload) == 0  # BAD_REQUEST
    reply = apisix.http_req_call(token, vars=VARS, body=b"")  # the connection goes on
    assert reply.round_trips == 1 and reply.action == "stop"


def test_a_new_call_while_prefetch_answers_are_pending_closes_the_connection(
    runner: RunnerHandle,
) -> None:
    with runner.client() as bad, runner.client() as good:
        token = bad.prepare_conf([("reads-3-vars-and-body", {})])
        bad.send_raw(_call(token))
        assert bad.read_frame()[0] == codec.RPC_EXTRA_INFO
        bad.send_raw(_call(token, 2))  # instead of the answers
        with pytest.raises(ConnectionError):
            while True:
                bad.read_frame()
        ok = good.prepare_conf([("stops", {})])
        assert good.http_req_call(ok).status == 403
