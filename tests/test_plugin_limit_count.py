"""limit-count with policy local: APISIX's conf, fixed windows, quota headers, keys; and
the count holding across ``--workers 2``. Over the real socket. (Redis: test_redis_limits.)"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_connections import connection_on_each_worker

from a6runner import ConfError
from a6runner.plugins.limit_count import LimitCount
from a6runner.testing import Client, Reply, RunnerHandle, RunnerProcess, run_runner, spawn_runner

SERVED_BY = str(Path(__file__).with_name("limit_plugins.py"))
SUPPORT = str(Path(__file__).with_name("support_plugins.py"))  # "hold", for one client per worker


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with (
        tempfile.TemporaryDirectory(prefix="a6runner-test-") as sockets,
        run_runner(bundled=True, socket_path=f"{sockets}/runner") as handle,
    ):
        yield handle


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


def quota(reply: Reply) -> tuple[str | None, str | None, str | None]:
    """The X-RateLimit-* headers: on resp_headers when the call passed, else on the Stop."""
    entries = reply.resp_headers if reply.action == "rewrite" else reply.headers
    found = {name.lower(): value for name, value in entries}
    return (
        found.get("x-ratelimit-limit"),
        found.get("x-ratelimit-remaining"),
        found.get("x-ratelimit-reset"),
    )


def test_count_per_window_then_rejected_with_quota_headers(apisix: Client) -> None:
    token = apisix.prepare_conf([("limit-count", {"count": 3, "time_window": 60})])
    replies = [apisix.http_req_call(token, src_ip="127.0.0.2") for _ in range(5)]
    assert [r.action for r in replies] == ["rewrite"] * 3 + ["stop"] * 2
    assert [quota(r)[:2] for r in replies] == [
        ("3", "2"),
        ("3", "1"),
        ("3", "0"),
        ("3", "0"),
        ("3", "0"),
    ]
    assert all(1 <= int(quota(r)[2] or 0) <= 60 for r in replies)
    assert (replies[3].status, replies[3].body) == (503, None)  # APISIX's default
    assert all(r.asked == [] for r in replies)  # remote_addr is the call's src_ip


def test_rejected_code_and_msg(apisix: Client) -> None:
    conf = {"count": 1, "time_window": 60, "rejected_code": 429, "rejected_msg": "slow down"}
    token = apisix.prepare_conf([("limit-count", conf)])
    assert apisix.http_req_call(token).action == "rewrite"
    reply = apisix.http_req_call(token)
    assert (reply.action, reply.status) == ("stop", 429)
    assert json.loads(reply.body or b"") == {"error_msg": "slow down"}
    assert reply.header("Content-Type") == "application/json"
    assert quota(reply)[:2] == ("1", "0")


def test_quota_headers_can_be_turned_off(apisix: Client) -> None:
    conf = {"count": 1, "time_window": 60, "show_limit_quota_header": False}
    token = apisix.prepare_conf([("limit-count", conf)])
    first = apisix.http_req_call(token)
    assert (first.action, first.resp_headers) == ("none", [])
    second = apisix.http_req_call(token)
    assert (second.action, second.status, second.headers) == ("stop", 503, [])


def test_client_addresses_are_counted_apart(apisix: Client) -> None:
    token = apisix.prepare_conf([("limit-count", {"count": 1, "time_window": 60})])
    assert apisix.http_req_call(token, src_ip="127.0.0.3").action == "rewrite"
    assert apisix.http_req_call(token, src_ip="::1").action == "rewrite"
    assert apisix.http_req_call(token, src_ip="127.0.0.3").action == "stop"
    assert apisix.http_req_call(token, src_ip="::1").action == "stop"


def test_var_key_is_fetched_through_extra_info(apisix: Client) -> None:
    conf = {"count": 1, "time_window": 60, "key": "http_x_user"}
    token = apisix.prepare_conf([("limit-count", conf)])
    ada = apisix.http_req_call(token, vars={"http_x_user": "ada"})
    assert (ada.action, ada.asked) == ("rewrite", [("var", "http_x_user")])
    assert apisix.http_req_call(token, vars={"http_x_user": "bob"}).action == "rewrite"
    assert apisix.http_req_call(token, vars={"http_x_user": "ada"}).action == "stop"
    # no value: counted by client address, as in APISIX
    assert apisix.http_req_call(token, src_ip="127.0.0.4").action == "rewrite"
    assert apisix.http_req_call(token, src_ip="127.0.0.4").action == "stop"


def test_var_combination_key(apisix: Client) -> None:
    conf = {
        "count": 1,
        "time_window": 60,
        "key_type": "var_combination",
        "key": "$remote_addr ${http_x_user}!",
    }
    token = apisix.prepare_conf([("limit-count", conf)])
    ada = {"http_x_user": "ada"}
    first = apisix.http_req_call(token, src_ip="127.0.0.5", vars=ada)
    assert (first.action, first.asked) == ("rewrite", [("var", "http_x_user")])
    assert apisix.http_req_call(token, src_ip="127.0.0.5", vars=ada).action == "stop"
    bob = {"http_x_user": "bob"}
    assert apisix.http_req_call(token, src_ip="127.0.0.5", vars=bob).action == "rewrite"
    assert apisix.http_req_call(token, src_ip="127.0.0.6", vars=ada).action == "rewrite"
    # no client address in the call: remote_addr is asked for; one variable set is enough
    alone = apisix.http_req_call(token, src_ip=None, vars=ada)
    assert (alone.action, alone.asked) == (
        "rewrite",
        [("var", "remote_addr"), ("var", "http_x_user")],
    )
    assert apisix.http_req_call(token, src_ip=None, vars=ada).action == "stop"


def test_var_combination_with_no_value_counts_by_client_address(apisix: Client) -> None:
    conf = {"count": 1, "time_window": 60, "key_type": "var_combination", "key": "$http_x_a"}
    token = apisix.prepare_conf([("limit-count", conf)])
    assert apisix.http_req_call(token, src_ip="127.0.0.6").action == "rewrite"
    assert apisix.http_req_call(token, src_ip="127.0.0.6").action == "stop"
    assert apisix.http_req_call(token, src_ip="127.0.0.7").action == "rewrite"


def test_no_client_address_falls_back_to_the_remote_addr_var(apisix: Client) -> None:
    token = apisix.prepare_conf([("limit-count", {"count": 1, "time_window": 60})])
    reply = apisix.http_req_call(token, src_ip=None, vars={"remote_addr": "127.0.0.8"})
    assert (reply.action, reply.asked) == ("rewrite", [("var", "remote_addr")])
    assert apisix.http_req_call(token, src_ip="127.0.0.8").action == "stop"
    # not even that: one count for every such call
    assert apisix.http_req_call(token, src_ip=None).action == "rewrite"
    assert apisix.http_req_call(token, src_ip=None).action == "stop"


def test_constant_key_is_one_count_for_everyone(apisix: Client) -> None:
    conf = {"count": 2, "time_window": 60, "key_type": "constant", "key": "everyone"}
    token = apisix.prepare_conf([("limit-count", conf)])
    actions = [apisix.http_req_call(token, src_ip=f"127.0.1.{i}").action for i in range(3)]
    assert actions == ["rewrite", "rewrite", "stop"]


def test_same_conf_shares_its_count_and_group_names_a_shared_count(apisix: Client) -> None:
    conf = {"count": 1, "time_window": 60, "key_type": "constant", "key": "k"}
    first = apisix.prepare_conf([("limit-count", conf)], key="route-1")
    again = apisix.prepare_conf([("limit-count", conf)], key="route-2")
    assert first != again
    assert apisix.http_req_call(first).action == "rewrite"
    assert apisix.http_req_call(again).action == "stop"  # same conf: same count
    grouped = [
        apisix.prepare_conf([("limit-count", {**conf, "count": n, "group": "g"})]) for n in (1, 5)
    ]
    assert apisix.http_req_call(grouped[0]).action == "rewrite"
    assert apisix.http_req_call(grouped[1]).action == "rewrite"  # 2nd call of 5
    assert apisix.http_req_call(grouped[0]).action == "stop"  # 3rd call of 1


def test_a_later_plugin_still_runs_when_the_call_passes(apisix: Client) -> None:
    token = apisix.prepare_conf(
        [("limit-count", {"count": 5, "time_window": 60}), ("say", {"body": "hi"})]
    )
    reply = apisix.http_req_call(token, src_ip="127.0.0.9")
    assert (reply.action, reply.body) == ("stop", b"hi")
    # resp_headers of a passing limit-count reach the client on the later Stop too
    assert quota(reply)[:2] == ("5", "4")


BAD_CONFS = [
    ({}, "count is required"),
    ({"count": 1}, "time_window is required"),
    ({"count": 0, "time_window": 1}, "count must be an integer > 0"),
    ({"count": "10", "time_window": 1}, "count must be an integer > 0"),
    ({"count": True, "time_window": 1}, "count must be an integer > 0"),
    ({"count": 1, "time_window": 1.5}, "time_window must be an integer > 0"),
    ({"count": 1, "time_window": 1, "key_type": "header"}, "key_type must be one of"),
    ({"count": 1, "time_window": 1, "key": ""}, "key must be a non-empty string"),
    ({"count": 1, "time_window": 1, "rejected_code": 199}, "rejected_code must be"),
    ({"count": 1, "time_window": 1, "rejected_code": 600}, "rejected_code must be"),
    ({"count": 1, "time_window": 1, "rejected_code": "429"}, "rejected_code must be"),
    ({"count": 1, "time_window": 1, "rejected_msg": ""}, "rejected_msg must be a non-empty"),
    ({"count": 1, "time_window": 1, "group": 5}, "group must be a non-empty string"),
    ({"count": 1, "time_window": 1, "policy": "memcached"}, "policy must be one of"),
    ({"count": 1, "time_window": 1, "allow_degradation": "yes"}, "allow_degradation must be"),
    ({"count": 1, "time_window": 1, "show_limit_quota_header": 1}, "show_limit_quota_header"),
    ({"count": 1, "time_window": 1, "policy": "redis"}, "redis_host is required"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("conf, reason", BAD_CONFS)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        LimitCount().parse_conf(json.dumps(conf).encode())
    token = apisix.prepare_conf([("limit-count", conf)])
    assert apisix.http_req_call(token).action == "none"


# -- --workers 2 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers() -> Iterator[RunnerProcess]:
    with (
        tempfile.TemporaryDirectory(prefix="a6runner-test-") as sockets,
        spawn_runner(
            ["--workers", "2", "--plugins", SERVED_BY, "--plugins", SUPPORT],
            socket_path=f"{sockets}/w",
        ) as handle,
    ):
        yield handle


def served_by(reply: Reply) -> str | None:
    entries = reply.resp_headers if reply.action == "rewrite" else reply.headers
    return dict(entries).get("X-Served-By")


def test_local_count_holds_across_workers(workers: RunnerProcess, tmp_path: Path) -> None:
    with workers.client() as setup:
        conf = {"count": 10, "time_window": 60, "rejected_code": 429}
        token = setup.prepare_conf([("served-by", {}), ("limit-count", conf)])
    clients = list(connection_on_each_worker(workers, tmp_path).values())
    try:
        replies = [clients[i % 2].http_req_call(token, src_ip="127.0.0.10") for i in range(30)]
    finally:
        for c in clients:
            c.close()
    assert len({served_by(r) for r in replies}) == 2  # both workers answered
    passed = [r for r in replies if r.action == "rewrite"]
    rejected = [r for r in replies if r.action == "stop"]
    assert (len(passed), len(rejected)) == (10, 20)
    assert {r.status for r in rejected} == {429}
    assert [quota(r)[1] for r in passed] == [str(n) for n in range(9, -1, -1)]
