"""Error paths of the protocol over the real socket: each costs one call (or nothing), is
logged, and the connection and the runner go on serving."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_plugins import ALL, Holding

from a6runner._kernels import codec
from a6runner.testing import Client, RunnerHandle, decode_reply, run_runner


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with run_runner(plugins=ALL) as handle:
        yield handle


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


def still_serving(apisix: Client) -> None:
    token = apisix.prepare_conf([("stopper", {"body": "still here"})])
    assert apisix.http_req_call(token).body == b"still here"


def test_prepare_conf_failing_in_the_store_is_service_unavailable(
    apisix: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(RuntimeError, match="SERVICE_UNAVAILABLE"):
        apisix.prepare_conf([("filters-that-cannot-be-read", {})])
    assert "PrepareConf failed" in caplog.text and "no filter here" in caplog.text
    still_serving(apisix)


def test_an_internal_error_in_a_call_task_is_service_unavailable(
    apisix: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = apisix.prepare_conf([("raises-base-exception", {})])
    assert apisix.http_req_call(token).error == "SERVICE_UNAVAILABLE"
    assert "plugin 'raises-base-exception' request filter raised Fatal" in caplog.text
    assert "Fatal: not an Exception" in caplog.text  # with its traceback
    still_serving(apisix)


def test_an_extra_info_answer_with_no_question_pending_is_a_bad_request(apisix: Client) -> None:
    apisix.send_raw(codec.build_extra_info_resp(b"stray answer"))
    assert decode_reply(*apisix.read_frame()).error == "BAD_REQUEST"
    # the stray answer is not kept for the next question
    token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr"]})])
    reply = apisix.http_req_call(token, vars={"remote_addr": "10.0.0.9"})
    assert reply.body == b'{"remote_addr": "10.0.0.9"}'


def test_an_undecodable_extra_info_answer_costs_that_call(apisix: Client) -> None:
    token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr"]})])
    apisix.send_raw(codec.build_http_req_call_req(5, token, 0, "/", [], [], None))
    frame_type, _ = apisix.read_frame()
    assert frame_type == codec.RPC_EXTRA_INFO
    apisix.send_raw(codec.encode_frame(codec.RPC_EXTRA_INFO, b"\x01\x02"))
    reply = decode_reply(*apisix.read_frame())
    assert reply.kind == "error" and reply.error == "SERVICE_UNAVAILABLE"
    still_serving(apisix)


def test_frames_sent_behind_a_running_call_are_answered_in_order(
    apisix: Client, tmp_path: Path
) -> None:
    """APISIX keeps one call in flight per connection, but a PrepareConf and a call sent
    while an async call runs are queued, then answered after it, in order. (While the
    call waits for an ExtraInfo answer, such a frame closes the connection instead: see
    test_hardening.)"""
    hold = Holding(tmp_path, body="held")
    held = apisix.prepare_conf([("hold", hold.conf)])
    apisix.send_raw(codec.build_http_req_call_req(1, held, 0, "/", [], [], None))
    hold.wait_entered()  # the call runs (in a task, not waiting for ExtraInfo)
    apisix.send_raw(codec.build_prepare_conf_req([("stopper", '{"body": "queued"}')], None))
    apisix.send_raw(codec.build_http_req_call_req(2, 0xDEAD0000, 0, "/", [], [], None))
    hold.release()
    first = decode_reply(*apisix.read_frame())
    assert first.id == 1 and first.body == b"held"
    prepared = decode_reply(*apisix.read_frame())
    assert prepared.kind == "prepare_conf" and prepared.conf_token != 0
    assert decode_reply(*apisix.read_frame()).error == "CONF_TOKEN_NOT_FOUND"
    assert apisix.http_req_call(prepared.conf_token).body == b"queued"


def test_a_call_whose_connection_is_gone_is_abandoned_even_if_a_plugin_carries_on(
    runner: RunnerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="a6runner"):
        with runner.client() as apisix:
            token = apisix.prepare_conf([("ignores-cancellation", {})])
            apisix.send_raw(codec.build_http_req_call_req(3, token, 0, "/", [], [], None))
            assert apisix.read_frame()[0] == codec.RPC_EXTRA_INFO  # waiting for "first"
        deadline = time.monotonic() + 30
        while "call 3 abandoned: APISIX closed the connection" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.01)
    with runner.client() as apisix:
        still_serving(apisix)
