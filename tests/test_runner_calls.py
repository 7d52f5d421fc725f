"""Call semantics over the real unix socket (PROTOCOL.md §4 and §5), in-process runner."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_clock import FakeClock
from support_plugins import ALL, CountParses, Holding

from a6runner._kernels import codec
from a6runner.testing import Client, RunnerHandle, decode_reply, run_runner


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with run_runner(plugins=ALL) as handle:
        yield handle


@pytest.fixture(autouse=True)
def no_event_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """An exception in a callback of the runner's loop is logged by asyncio, not raised:
    a test would pass over it."""
    yield
    errors = [
        record
        for record in caplog.get_records("setup") + caplog.get_records("call")
        if record.name == "asyncio" and record.levelno >= logging.ERROR
    ]
    assert not errors, [record.getMessage() for record in errors]


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


def body_json(reply) -> object:
    assert reply.body is not None
    return json.loads(reply.body)


# -- PrepareConf -------------------------------------------------------------------------------


def test_prepare_conf_gives_non_zero_tokens_and_same_key_same_token(apisix: Client) -> None:
    a = apisix.prepare_conf([("echo-input", {})], key="route-a")
    b = apisix.prepare_conf([("echo-input", {})], key="route-b")
    assert a != 0 and b != 0 and a != b
    assert apisix.prepare_conf([("echo-input", {})], key="route-a") == a
    no_key_1 = apisix.prepare_conf([("echo-input", {})])
    no_key_2 = apisix.prepare_conf([("echo-input", {})])
    assert no_key_1 != no_key_2


def test_same_key_does_not_parse_again(apisix: Client) -> None:
    token = apisix.prepare_conf([("count-parses", {})], key="count-once")
    before = CountParses.parses
    assert apisix.prepare_conf([("count-parses", {})], key="count-once") == token
    assert CountParses.parses == before


def test_unknown_plugins_and_bad_confs_are_skipped(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            ("no-such-plugin", {}),
            ("bad-conf", {}),
            ("stopper", "not json"),
            ("echo-input", {"a": 1}),
        ]
    )
    reply = apisix.http_req_call(token)
    assert reply.action == "stop"
    assert body_json(reply)["conf"] == {"a": 1}


def test_token_is_shared_across_connections(runner: RunnerHandle) -> None:
    with runner.client() as first, runner.client() as second:
        token = first.prepare_conf([("stopper", {"body": "shared"})])
        assert second.http_req_call(token).body == b"shared"


def test_unknown_token_then_connection_still_usable(apisix: Client) -> None:
    reply = apisix.http_req_call(0xDEAD0000)
    assert reply.kind == "error" and reply.error == "CONF_TOKEN_NOT_FOUND"
    reply = apisix.http_resp_call(0xDEAD0000)
    assert reply.kind == "error" and reply.error == "CONF_TOKEN_NOT_FOUND"
    token = apisix.prepare_conf([("stopper", {"body": "ok"})])
    assert apisix.http_req_call(token).body == b"ok"


def test_a_token_expires_after_the_ttl_x_1_2_and_its_key_then_gives_a_new_one() -> None:
    clock = FakeClock()
    with (
        run_runner(plugins=ALL, conf_expire_time=100, clock=clock) as runner,
        runner.client() as apisix,
    ):
        token = apisix.prepare_conf([("stopper", {"body": "fresh"})], key="k")
        clock.advance(119)
        assert apisix.http_req_call(token).body == b"fresh"
        clock.advance(1)  # 100 s x 1.2 since PrepareConf
        assert apisix.http_req_call(token).error == "CONF_TOKEN_NOT_FOUND"
        new_token = apisix.prepare_conf([("stopper", {"body": "fresh"})], key="k")
        assert new_token != token
        assert apisix.http_req_call(new_token).body == b"fresh"


def test_a_key_prepared_again_after_expiry_never_gets_the_dead_token() -> None:
    """The re-prepare that follows CONF_TOKEN_NOT_FOUND must not get the expired token back
    (APISIX would loop), even when no call looked the dead token up in between."""
    clock = FakeClock()
    with (
        run_runner(plugins=ALL, conf_expire_time=1, clock=clock) as runner,
        runner.client() as apisix,
    ):
        token = apisix.prepare_conf([("stopper", {"body": "x"})], key="k")
        clock.advance(2)
        new_token = apisix.prepare_conf([("stopper", {"body": "x"})], key="k")
        assert new_token != token
        assert apisix.http_req_call(new_token).body == b"x"


# -- HTTPReqCall: input ---------------------------------------------------------------------


@pytest.mark.parametrize("src_ip", ["10.1.2.3", "2001:db8::7"])
def test_request_input_is_seen_by_plugins(apisix: Client, src_ip: str) -> None:
    token = apisix.prepare_conf([("echo-input", {})])
    reply = apisix.http_req_call(
        token,
        method="PUT",
        path="/api/v1/items",
        args=[("a", "1"), ("a", "2"), ("flag", None), ("q", "ä")],
        headers=[("host", "upstream.test"), ("x-multi", "1"), ("x-multi", "2")],
        src_ip=src_ip,
        id=77,
    )
    assert reply.id == 77
    seen = body_json(reply)
    assert seen["id"] == 77
    assert seen["method"] == "PUT"
    assert seen["path"] == "/api/v1/items"
    assert seen["args"] == [["a", "1"], ["a", "2"], ["flag", ""], ["q", "ä"]]
    assert seen["headers"] == [["host", "upstream.test"], ["x-multi", "1"], ["x-multi", "2"]]
    assert seen["src_ip"] == src_ip
    assert seen["conf_token"] == token


def test_id_zero_is_answered_like_any_other(apisix: Client) -> None:
    token = apisix.prepare_conf([("stopper", {"body": "first call of a worker"})])
    reply = apisix.http_req_call(token, id=0)
    assert reply.kind == "http_req_call" and reply.id == 0 and reply.action == "stop"
    plain = apisix.prepare_conf([("rewriter", {})])
    reply = apisix.http_req_call(plain, id=0)
    assert reply.id == 0 and reply.action == "none"


# -- Stop -------------------------------------------------------------------------------------


def test_stop_with_status_headers_and_body(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            (
                "stopper",
                {
                    "status": 403,
                    "headers": [["X-A", "1"], ["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]],
                    "body": "denied",
                },
            ),
            ("echo-input", {}),  # never runs: the chain stopped
        ]
    )
    reply = apisix.http_req_call(token)
    assert reply.action == "stop"
    assert reply.status == 403
    assert reply.headers == [("X-A", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert reply.body == b"denied"


def test_stop_without_status_leaves_it_to_apisix(apisix: Client) -> None:
    token = apisix.prepare_conf([("stopper", {"body": "no status"})])
    reply = apisix.http_req_call(token)
    assert reply.action == "stop" and reply.status == 0 and reply.body == b"no status"


def test_stop_keeps_resp_headers_of_earlier_plugins(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            ("rewriter", {"resp_headers": [["x-request-id", "abc"]]}),
            ("stopper", {"status": 401, "headers": [["www-authenticate", "Basic"]]}),
        ]
    )
    reply = apisix.http_req_call(token)
    assert reply.action == "stop"
    assert reply.headers == [("x-request-id", "abc"), ("www-authenticate", "Basic")]


def test_a_stop_header_replaces_an_earlier_resp_header_of_that_name_in_any_case(
    apisix: Client,
) -> None:
    token = apisix.prepare_conf(
        [
            ("rewriter", {"resp_headers": [["X-Same", "early"], ["x-other", "1"]]}),
            ("stopper", {"status": 401, "headers": [["x-same", "stop"]]}),
        ]
    )
    reply = apisix.http_req_call(token)
    assert reply.action == "stop"
    assert reply.headers == [("x-other", "1"), ("x-same", "stop")]


# -- Rewrite ------------------------------------------------------------------------------------


def test_no_change_is_an_empty_reply(apisix: Client) -> None:
    token = apisix.prepare_conf([("rewriter", {}), ("marker", {"mark": "m"})])
    reply = apisix.http_req_call(token, headers=[("host", "h")], id=5)
    assert reply.action == "rewrite"  # marker changed a header
    token = apisix.prepare_conf([("rewriter", {"path": "/same"})])
    reply = apisix.http_req_call(token, path="/same", id=6)
    assert reply.action == "none" and reply.id == 6


def test_rewrite_path_only_keeps_everything_else(apisix: Client) -> None:
    token = apisix.prepare_conf([("rewriter", {"path": "/new"})])
    reply = apisix.http_req_call(token, path="/old", args=[("a", "1")])
    assert reply.action == "rewrite"
    assert reply.path == "/new"
    assert reply.headers == [] and reply.args == [] and reply.resp_headers == []
    assert reply.body is None


def test_rewrite_host_and_headers_minimal_diff(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            (
                "rewriter",
                {
                    "set_headers": {"Host": "new.upstream", "x-same": "1"},
                    "del_headers": ["x-remove", "x-absent"],
                    "add_headers": [["x-multi", "b"]],
                },
            )
        ]
    )
    reply = apisix.http_req_call(
        token,
        headers=[("host", "old"), ("x-same", "1"), ("x-remove", "r"), ("x-multi", "a")],
    )
    assert reply.action == "rewrite"
    assert reply.path is None
    changes = dict(reply.headers)
    assert changes == {"Host": "new.upstream", "x-remove": None, "x-multi": "a, b"}


def test_rewrite_args_only_keeps_the_path(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            (
                "rewriter",
                {"set_args": {"page": "2"}, "add_args": [["tag", "y"]], "del_args": ["drop"]},
            )
        ]
    )
    reply = apisix.http_req_call(
        token, path="/list", args=[("page", "1"), ("tag", "x"), ("drop", "1"), ("keep", "k")]
    )
    assert reply.action == "rewrite"
    assert reply.path is None
    assert reply.args == [("page", "2"), ("tag", "x"), ("tag", "y"), ("drop", None)]


def test_rewrite_path_and_args_together(apisix: Client) -> None:
    token = apisix.prepare_conf([("rewriter", {"path": "/v2", "set_args": {"v": "2"}})])
    reply = apisix.http_req_call(token, path="/v1", args=[("v", "1")])
    assert reply.path == "/v2" and reply.args == [("v", "2")]


def test_rewrite_response_headers_while_calling_upstream(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            (
                "rewriter",
                {"resp_headers": [["X-Resp", "1"], ["X-Resp", "2"], ["content-type", "x/y"]]},
            )
        ]
    )
    reply = apisix.http_req_call(token)
    assert reply.action == "rewrite"
    # APISIX itself ignores content-type there; we pass what the plugin set, in order.
    assert reply.resp_headers == [("X-Resp", "1"), ("X-Resp", "2"), ("content-type", "x/y")]


def test_rewrite_request_body(apisix: Client) -> None:
    token = apisix.prepare_conf([("rewriter", {"body": "new body"})])
    reply = apisix.http_req_call(token, method="POST")
    assert reply.action == "rewrite" and reply.body == b"new body"


def test_filters_run_in_conf_order(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [("marker", {"mark": "1"}), ("marker-missing", {}), ("marker", {"mark": "2"})]
    )
    reply = apisix.http_req_call(token, headers=[("host", "h")])
    assert dict(reply.headers) == {"x-ran": "1, 2"}


# -- ExtraInfo ----------------------------------------------------------------------------------


def test_ask_vars_and_missing_var(apisix: Client) -> None:
    token = apisix.prepare_conf([("ask-vars", {"vars": ["remote_addr", "request_time", "nope"]})])
    reply = apisix.http_req_call(token, vars={"remote_addr": "10.0.0.9", "request_time": "0.001"})
    assert body_json(reply) == {"remote_addr": "10.0.0.9", "request_time": "0.001", "nope": None}
    # each var asked once: the second read came from the call's cache
    assert reply.asked == [("var", "remote_addr"), ("var", "request_time"), ("var", "nope")]


def test_var_values_that_are_not_utf8_reach_the_plugin_intact(apisix: Client) -> None:
    token = apisix.prepare_conf([("ask-vars", {"vars": ["raw"]})])
    reply = apisix.http_req_call(token, vars={"raw": b"\xffok"})
    assert json.loads(reply.body or b"") == {"raw": "\udcffok"}  # surrogateescape


def test_after_an_async_filter_the_rest_of_the_chain_runs_in_order(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            ("async-marker", {"mark": "1"}),
            ("marker", {"mark": "2"}),  # returns True: not awaitable, ignored
            ("async-marker", {"mark": "3"}),
            ("marker", {"mark": "4"}),
        ]
    )
    reply = apisix.http_req_call(token, headers=[("host", "h")])
    assert reply.action == "rewrite"
    assert dict(reply.headers) == {"x-ran": "1, 2, 3, 4"}


def test_a_filter_stopping_after_an_async_filter_ends_the_chain(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            ("async-marker", {"mark": "1"}),
            ("stopper", {"status": 403, "body": "stopped"}),
            ("marker", {"mark": "never"}),
        ]
    )
    reply = apisix.http_req_call(token, headers=[("host", "h")])
    assert (reply.action, reply.status, reply.body) == ("stop", 403, b"stopped")


def test_a_response_filter_knows_its_call(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-identity", {})])
    reply = apisix.http_resp_call(token, status=201, id=42)
    assert json.loads(reply.body or b"") == {
        "id": 42,
        "conf_token": token,
        "status": 201,
        "has_services": True,
    }


def test_an_absent_response_body_reads_as_empty(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-mod", {"read_body": True})])
    reply = apisix.http_resp_call(token, headers=[("content-type", "text/plain")], body=None)
    assert reply.asked == [("resp_body", None)]
    assert reply.body is None  # b"".upper(): an empty new body means unchanged (PROTOCOL.md)


def test_extra_info_outside_a_call_task_is_a_clear_plugin_error(
    apisix: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = apisix.prepare_conf([("drives-var-by-hand", {})])
    assert apisix.http_req_call(token).error == "SERVICE_UNAVAILABLE"
    assert "ExtraInfo is only available while a call is in flight" in caplog.text


@pytest.mark.parametrize(
    "body",
    [b"", b"plain text", b"a=1&b=2", json.dumps({"k": [1, 2]}).encode(), bytes(range(256))],
    ids=["empty", "text", "form", "json", "binary"],
)
def test_ask_request_body(apisix: Client, body: bytes) -> None:
    token = apisix.prepare_conf([("ask-body", {})])
    reply = apisix.http_req_call(token, method="POST", body=body)
    assert body_json(reply) == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert reply.asked == [("req_body", None)]


@pytest.mark.slow
def test_15_mib_request_body_and_15_mib_stop_body(apisix: Client) -> None:
    big = bytes(range(256)) * (15 * 4096)
    assert len(big) == 15 * 1024 * 1024
    token = apisix.prepare_conf([("ask-body", {})])
    reply = apisix.http_req_call(token, method="POST", body=big)
    assert body_json(reply) == {"len": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    token = apisix.prepare_conf([("big-stop", {"size": 15 * 1024 * 1024})])
    reply = apisix.http_req_call(token)
    assert reply.action == "stop" and reply.body == b"x" * (15 * 1024 * 1024)


def test_reply_too_large_to_frame_is_an_error_and_connection_survives(
    apisix: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = apisix.prepare_conf([("big-stop", {"size": 17 * 1024 * 1024})])
    reply = apisix.http_req_call(token, id=32)
    assert reply.kind == "error" and reply.error == "SERVICE_UNAVAILABLE"
    logged = caplog.text
    assert "call 32: reply too large to frame (" in logged
    assert "): answered SERVICE_UNAVAILABLE" in logged and "(None)" not in logged
    ok = apisix.prepare_conf([("stopper", {"body": "still here"})])
    assert apisix.http_req_call(ok).body == b"still here"


# -- HTTPRespCall -------------------------------------------------------------------------------

UPSTREAM_HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", "13"),
    ("Set-Cookie", "a=1"),
    ("Set-Cookie", "b=2"),
    ("ETag", '"v1"'),
    ("Connection", "keep-alive"),
]


def test_setting_one_response_header_keeps_the_others(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-set-header", {"name": "X-Added", "value": "yes"})])
    reply = apisix.http_resp_call(token, status=200, headers=UPSTREAM_HEADERS)
    assert reply.kind == "http_resp_call" and reply.status == 0 and reply.body is None
    assert reply.headers == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("ETag", '"v1"'),
        ("X-Added", "yes"),
    ]


def test_response_status_headers_and_body(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [
            (
                "resp-mod",
                {"status": 418, "set_headers": {"content-type": "text/plain"}, "body": "teapot"},
            ),
            ("boom", {}),  # never runs: the first filter changed the response
        ]
    )
    reply = apisix.http_resp_call(token, status=200, headers=UPSTREAM_HEADERS)
    assert reply.status == 418
    assert reply.body == b"teapot"
    # a new body invalidates length and validators; everything else is kept
    assert reply.headers == [
        ("content-type", "text/plain"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_response_body_read_through_extra_info(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-mod", {"read_body": True})])
    reply = apisix.http_resp_call(token, headers=[("content-type", "text/plain")], body=b"hello")
    assert reply.asked == [("resp_body", None)]
    assert reply.body == b"HELLO"
    assert reply.headers == [("content-type", "text/plain")]


def test_response_unchanged_is_empty(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-mod", {})])
    reply = apisix.http_resp_call(token, status=201, headers=UPSTREAM_HEADERS, id=0)
    assert reply.kind == "http_resp_call" and reply.id == 0
    assert reply.status == 0 and reply.headers == [] and reply.body is None


# -- errors ---------------------------------------------------------------------------------------


def test_plugin_exception_is_service_unavailable_and_connection_survives(
    apisix: Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = apisix.prepare_conf([("boom", {})])
    reply = apisix.http_req_call(token, id=31)
    assert reply.error == "SERVICE_UNAVAILABLE"
    assert "call 31: plugin 'boom' request filter raised RuntimeError: answered" in caplog.text
    assert "Traceback" in caplog.text and "plugin bug" in caplog.text  # for the plugin's author
    assert apisix.http_resp_call(token, id=33).error == "SERVICE_UNAVAILABLE"  # async filter
    assert "call 33: plugin 'boom' response filter raised RuntimeError: answered" in caplog.text
    ok = apisix.prepare_conf([("stopper", {"body": "fine"})])
    assert apisix.http_req_call(ok).body == b"fine"


@pytest.mark.parametrize(
    "frame",
    [
        codec.encode_frame(9, b"whatever"),
        codec.encode_frame(codec.RPC_HTTP_REQ_CALL, b"\x01\x02"),
        codec.encode_frame(codec.RPC_HTTP_REQ_CALL, b"\xff" * 64),
        codec.encode_frame(codec.RPC_PREPARE_CONF, b""),
        codec.encode_frame(codec.RPC_HTTP_RESP_CALL, b"\x10\x00\x00\x00" + b"\x00" * 4),
    ],
    ids=["unknown-type", "too-short", "garbage", "empty-prepare", "bad-offset"],
)
def test_bad_frames_get_bad_request_and_connection_survives(apisix: Client, frame: bytes) -> None:
    apisix.send_raw(frame)
    frame_type, payload = apisix.read_frame()
    reply = decode_reply(frame_type, payload)
    assert reply.kind == "error" and reply.error == "BAD_REQUEST"
    ok = apisix.prepare_conf([("stopper", {"body": "fine"})])
    assert apisix.http_req_call(ok).body == b"fine"


def test_peer_closing_mid_call_and_short_frames_do_not_hurt_the_runner(
    runner: RunnerHandle,
) -> None:
    # header too short / data too short, then gone
    for partial in (b"\x02\x00", b"\x02\x00\x00\x40" + b"\x00" * 10):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(runner.socket_path)
            s.sendall(partial)
    # network down while the runner waits for an ExtraInfo answer
    with runner.client() as apisix:
        token = apisix.prepare_conf([("ask-body", {})])
        apisix.send_raw(codec.build_http_req_call_req(1, token, 2, "/", [], [], None))
        frame_type, _ = apisix.read_frame()
        assert frame_type == codec.RPC_EXTRA_INFO
    with runner.client() as apisix:
        token = apisix.prepare_conf([("stopper", {"body": "alive"})])
        assert apisix.http_req_call(token).body == b"alive"


# -- concurrency --------------------------------------------------------------------------------


@pytest.mark.slow
def test_200_connections_50_calls_each_no_cross_talk(runner: RunnerHandle) -> None:
    async def one_connection(n: int, token: int) -> None:
        client = await runner.async_client()
        async with client:
            for i in range(50):
                call_id = n * 1000 + i
                reply = await client.http_req_call(
                    token, path=f"/c{n}/{i}", args=[("n", str(n))], id=call_id
                )
                assert reply.kind == "http_req_call", reply.error
                assert reply.id == call_id
                seen = json.loads(reply.body or b"")
                assert seen["id"] == call_id and seen["path"] == f"/c{n}/{i}"
                assert seen["args"] == [["n", str(n)]]

    async def main() -> None:
        setup = await runner.async_client()
        token = await setup.prepare_conf([("echo-input", {})])
        await setup.close()
        await asyncio.gather(*(one_connection(n, token) for n in range(200)))

    asyncio.run(main())


def test_a_waiting_filter_does_not_hold_up_other_connections(
    runner: RunnerHandle, tmp_path: Path
) -> None:
    held = Holding(tmp_path, body="slow")

    async def main() -> None:
        slow = await runner.async_client()
        fast = await runner.async_client()
        holding = await slow.prepare_conf([("hold", held.conf)])
        quick = await fast.prepare_conf([("stopper", {"body": "quick"})])
        slow_call = asyncio.ensure_future(slow.http_req_call(holding))
        await asyncio.to_thread(held.wait_entered)  # the slow call waits inside the runner
        for _ in range(20):
            assert (await fast.http_req_call(quick)).body == b"quick"
        assert not slow_call.done()  # 20 fast calls finished while it still waits
        held.release()
        assert (await slow_call).body == b"slow"
        await slow.close()
        await fast.close()

    asyncio.run(main())


def test_a_status_set_to_the_upstream_value_is_still_sent(apisix: Client) -> None:
    token = apisix.prepare_conf([("resp-mod", {"status": 200})])
    reply = apisix.http_resp_call(token, status=200, headers=UPSTREAM_HEADERS)
    assert reply.status == 200 and reply.headers == [] and reply.body is None
