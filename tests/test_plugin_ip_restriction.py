"""ip-restriction: whitelist / blacklist of addresses and CIDRs on the client address."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from a6runner import ConfError
from a6runner.plugins.ip_restriction import IPRestriction
from a6runner.testing import Client, Reply, run_runner

DEFAULT_MESSAGE = "Your IP address is not allowed"


@pytest.fixture(scope="module")
def apisix() -> Iterator[Client]:
    with run_runner(bundled=True) as runner, runner.client() as client:
        yield client


def call(apisix: Client, conf: object, src_ip: str | None) -> Reply:
    token = apisix.prepare_conf([("ip-restriction", conf)])
    return apisix.http_req_call(token, src_ip=src_ip)


def assert_refused(reply: Reply, message: str = DEFAULT_MESSAGE) -> None:
    assert (reply.action, reply.status) == ("stop", 403)
    assert reply.header("content-type") == "application/json"
    assert reply.body is not None and json.loads(reply.body) == {"message": message}


WHITELIST = {"whitelist": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]}


@pytest.mark.parametrize(
    "src_ip",
    [
        "10.1.2.3",
        "10.255.255.255",
        "192.168.1.7",
        "2001:db8::1",
        "2001:db8:ffff::5",
        "::ffff:10.0.0.1",
    ],
)
def test_whitelist_lets_listed_addresses_through(apisix: Client, src_ip: str) -> None:
    assert call(apisix, WHITELIST, src_ip).action == "none"


@pytest.mark.parametrize(
    "src_ip",
    ["11.0.0.1", "192.168.1.8", "127.0.0.1", "2001:db9::1", "::1", "::ffff:11.0.0.1", None],
)
def test_whitelist_refuses_the_others(apisix: Client, src_ip: str | None) -> None:
    assert_refused(call(apisix, WHITELIST, src_ip))


def test_ipv4_never_matches_an_ipv6_network(apisix: Client) -> None:
    assert_refused(call(apisix, {"whitelist": ["::/0"]}, "1.2.3.4"))
    assert call(apisix, {"whitelist": ["::/0"]}, "::2").action == "none"


def test_blacklist(apisix: Client) -> None:
    conf = {"blacklist": ["203.0.113.0/24", "2001:db8::dead"], "message": "go away"}
    assert_refused(call(apisix, conf, "203.0.113.9"), "go away")
    assert_refused(call(apisix, conf, "2001:db8::dead"), "go away")
    assert call(apisix, conf, "203.0.114.1").action == "none"
    assert call(apisix, conf, "2001:db8::beef").action == "none"
    assert call(apisix, conf, None).action == "none"


def test_host_bits_in_a_cidr_are_ignored(apisix: Client) -> None:
    assert call(apisix, {"whitelist": ["10.1.2.3/16"]}, "10.1.200.1").action == "none"


def test_custom_message_is_json_escaped(apisix: Client) -> None:
    message = 'nope "quoted" ☃'
    assert_refused(
        call(apisix, {"whitelist": ["10.0.0.1"], "message": message}, "10.0.0.2"), message
    )


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"whitelist": ["10.0.0.0/8"], "blacklist": ["10.1.0.0/16"]}, "exactly one"),
        ({}, "exactly one"),
        ({"message": "x"}, "exactly one"),
        ({"whitelist": ["10.0.0.0/33"]}, "not an IP address or CIDR"),
        ({"whitelist": ["not-an-ip"]}, "not an IP address or CIDR"),
        ({"blacklist": ["2001:db8::/129"]}, "not an IP address or CIDR"),
        ({"whitelist": [10]}, r"whitelist\[0\]: must be a string \(got a number\)"),
        ({"whitelist": []}, "non-empty list"),
        ({"whitelist": "10.0.0.0/8"}, "non-empty list"),
        ({"whitelist": ["10.0.0.0/8"], "message": 5}, "message"),
    ],
)
def test_bad_conf_is_rejected_and_refused(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        IPRestriction().parse_conf(json.dumps(conf).encode())
    # a guard: a conf it rejects refuses every call (it used to be skipped, letting all in)
    reply = call(apisix, conf, "8.8.8.8")
    assert (reply.action, reply.status, reply.body) == ("stop", 503, None)
