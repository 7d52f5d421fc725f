"""Limit policies from APISIX confs, conf fingerprints, fixed-window counters (fake clock),
the services' policy dispatch, and the Redis client's idle timer. No Redis needed here:
the real-Redis scenarios are in test_redis_limits.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from a6runner import ConfError, LimitPolicy, RedisTarget, conf_fingerprint
from a6runner._services import FixedWindowCounters, LocalServices, TokenBuckets

SENTINEL = "SENTINEL-value-7f3a"


def test_local_is_the_default_and_needs_no_redis_fields() -> None:
    assert LimitPolicy.from_conf({}) == LimitPolicy()
    assert LimitPolicy.from_conf({"policy": "local", "redis_port": "ignored"}).redis is None


def test_redis_fields_take_apisix_defaults() -> None:
    policy = LimitPolicy.from_conf({"policy": "redis", "redis_host": "127.0.0.1"})
    assert policy.name == "redis"
    assert policy.redis == RedisTarget(
        nodes=(("127.0.0.1", 6379),),
        username=None,
        password=None,
        database=0,
        timeout=1.0,
        ssl=False,
        ssl_verify=False,
        keepalive_timeout=10.0,
        keepalive_pool=100,
    )


def test_redis_fields_are_read() -> None:
    conf = {
        "policy": "redis",
        "redis_host": "cache.internal",
        "redis_port": 6380,
        "redis_username": "app",
        "redis_password": SENTINEL,
        "redis_database": 2,
        "redis_timeout": 250,
        "redis_ssl": True,
        "redis_ssl_verify": True,
        "redis_keepalive_timeout": 60000,
        "redis_keepalive_pool": 8,
    }
    target = LimitPolicy.from_conf(conf).redis
    assert target is not None
    assert (target.nodes, target.username, target.password) == (
        (("cache.internal", 6380),),
        "app",
        SENTINEL,
    )
    assert (target.database, target.timeout, target.ssl, target.ssl_verify) == (2, 0.25, True, True)
    assert (target.keepalive_timeout, target.keepalive_pool) == (60.0, 8)
    assert target.describe() == "redis cache.internal:6380 db 2"
    assert SENTINEL not in repr(target) and SENTINEL not in repr(LimitPolicy.from_conf(conf))
    # an empty password means no AUTH, as in APISIX
    empty = LimitPolicy.from_conf({**conf, "redis_password": ""}).redis
    assert empty is not None and empty.password is None


def test_redis_cluster_fields() -> None:
    conf = {
        "policy": "redis-cluster",
        "redis_cluster_nodes": ["127.0.0.1:7000", "[::1]:7001", "node-3:7002"],
        "redis_cluster_name": "limits",
        "redis_password": SENTINEL,
        "redis_cluster_ssl": True,
    }
    target = LimitPolicy.from_conf(conf).redis
    assert target is not None and target.cluster
    assert target.nodes == (("127.0.0.1", 7000), ("::1", 7001), ("node-3", 7002))
    assert (target.cluster_name, target.password, target.ssl) == ("limits", SENTINEL, True)
    assert target.describe() == ("redis-cluster limits (127.0.0.1:7000, [::1]:7001, node-3:7002)")


def test_equal_connection_fields_are_one_target() -> None:
    """Targets key the pools: equal fields, one pool; any difference (the password too),
    another one."""
    conf = {"policy": "redis", "redis_host": "127.0.0.1", "redis_password": SENTINEL}
    first, again = LimitPolicy.from_conf(conf).redis, LimitPolicy.from_conf(conf).redis
    other = LimitPolicy.from_conf({**conf, "redis_password": "another"}).redis
    assert first == again and hash(first) == hash(again) and first is not again
    assert first != other
    assert len({first, again, other}) == 2


REDIS = {"policy": "redis", "redis_host": "127.0.0.1"}
CLUSTER = {
    "policy": "redis-cluster",
    "redis_cluster_nodes": ["127.0.0.1:7000"],
    "redis_cluster_name": "c",
}
BAD = [
    ({"policy": SENTINEL}, "policy must be one of local, redis, redis-cluster"),
    ({"policy": "redis"}, "redis_host is required"),
    ({**REDIS, "redis_host": "x"}, "redis_host must be a string of at least 2 characters"),
    ({**REDIS, "redis_host": [SENTINEL]}, "redis_host must be a string"),
    ({**REDIS, "redis_port": 0}, r"redis_port must be an integer in 1\.\.65535"),
    ({**REDIS, "redis_port": 65536}, "redis_port must be an integer in"),
    ({**REDIS, "redis_port": SENTINEL}, "redis_port must be an integer in"),
    ({**REDIS, "redis_port": True}, "redis_port must be an integer in"),
    ({**REDIS, "redis_username": ""}, "redis_username must be a string of at least 1"),
    ({**REDIS, "redis_password": 12345}, "redis_password must be a string"),
    ({**REDIS, "redis_database": -1}, "redis_database must be an integer >= 0"),
    ({**REDIS, "redis_timeout": 0}, "redis_timeout must be an integer >= 1"),
    ({**REDIS, "redis_timeout": 1.5}, "redis_timeout must be an integer >= 1"),
    ({**REDIS, "redis_ssl": SENTINEL}, "redis_ssl must be true or false"),
    ({**REDIS, "redis_ssl_verify": 1}, "redis_ssl_verify must be true or false"),
    ({**REDIS, "redis_keepalive_timeout": 999}, "redis_keepalive_timeout must be an integer >="),
    ({**REDIS, "redis_keepalive_pool": 0}, "redis_keepalive_pool must be an integer >= 1"),
    ({**CLUSTER, "redis_cluster_nodes": []}, "redis_cluster_nodes must be a non-empty list"),
    ({**CLUSTER, "redis_cluster_nodes": SENTINEL}, "redis_cluster_nodes must be a non-empty"),
    ({**CLUSTER, "redis_cluster_nodes": [7000]}, r"redis_cluster_nodes\[0\] must be a"),
    ({**CLUSTER, "redis_cluster_nodes": ["h" * 101]}, r"redis_cluster_nodes\[0\] must be a"),
    ({**CLUSTER, "redis_cluster_nodes": ["a:1", SENTINEL]}, r"redis_cluster_nodes\[1\] must be"),
    ({**CLUSTER, "redis_cluster_nodes": ["[::1:7000"]}, r"\[0\] must be 'host:port' \(IPv6"),
    ({**CLUSTER, "redis_cluster_nodes": [":7000"]}, r"\[0\] must be 'host:port' with a port"),
    ({**CLUSTER, "redis_cluster_nodes": ["h:0"]}, "with a port in 1..65535"),
    ({**CLUSTER, "redis_cluster_nodes": ["h:x1"]}, "with a port in 1..65535"),
    ({**CLUSTER, "redis_cluster_name": ""}, "redis_cluster_name must be a string"),
    ({k: v for k, v in CLUSTER.items() if k != "redis_cluster_name"}, "redis_cluster_name is"),
]


@pytest.mark.parametrize("conf, message", BAD)
def test_bad_fields_are_named_and_their_values_never_echoed(
    conf: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfError, match=message) as caught:
        LimitPolicy.from_conf(conf)
    assert SENTINEL not in str(caught.value)


@pytest.mark.usefixtures("without_redis")
def test_a_redis_policy_without_redis_py_is_a_clear_conf_error() -> None:
    with pytest.raises(
        ConfError, match=r"needs the redis package: pip install 'a6runner\[redis\]'"
    ):
        LimitPolicy.from_conf(REDIS)
    assert LimitPolicy.from_conf({}).redis is None  # local needs nothing


def test_fingerprint_leaves_out_where_the_limit_is_kept() -> None:
    conf = {"count": 10, "time_window": 60, **REDIS, "redis_password": SENTINEL}
    same = {"time_window": 60, "count": 10, "policy": "redis", "redis_host": "10.9.8.7"}
    assert conf_fingerprint(conf) == conf_fingerprint(same)
    assert conf_fingerprint(conf) != conf_fingerprint({**conf, "count": 11})
    assert len(conf_fingerprint(conf)) == 16


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fixed_window_counts_then_refuses_without_counting() -> None:
    clock = FakeClock()
    counters = FixedWindowCounters(clock)
    assert [counters.count("k", 2, 60) for _ in range(2)] == [
        (True, 1, 60.0),
        (True, 0, 60.0),
    ]
    clock.now += 15
    assert counters.count("k", 2, 60) == (False, 0, 45.0)
    assert counters.count("other", 2, 60) == (True, 1, 60.0)
    clock.now += 45  # the window has ended: a fresh one opens with this call
    assert counters.count("k", 2, 60) == (True, 1, 60.0)


def test_fixed_window_costs() -> None:
    counters = FixedWindowCounters(FakeClock())
    assert counters.count("k", 5, 10, cost=3) == (True, 2, 10.0)
    assert counters.count("k", 5, 10, cost=3) == (False, 2, 10.0)  # does not fit: not counted
    assert counters.count("k", 5, 10, cost=2) == (True, 0, 10.0)
    assert counters.count("none", 0, 10) == (False, 0, 10)  # limit 0: nothing ever fits
    assert len(counters) == 1  # and no window was opened for it


def test_ended_windows_are_forgotten() -> None:
    clock = FakeClock()
    counters = FixedWindowCounters(clock)
    for i in range(100):
        counters.count(f"client-{i}", 10, 1)
    counters.count("long", 10, 3600)
    clock.now += FixedWindowCounters.SWEEP_EVERY + 1
    counters.count("client-0", 10, 1)  # triggers the sweep
    assert len(counters) == 2  # "long" and the fresh "client-0"
    assert counters.forget_ended() == 0
    assert TokenBuckets().forget_full() == 0  # (the buckets' sweep, called the same way)


def test_local_services() -> None:
    async def scenario() -> None:
        services = LocalServices()
        quota = await services.counter("k", 2, 60)
        assert (quota.allowed, quota.limit, quota.remaining) == (True, 2, 1)
        assert 59 < quota.reset <= 60
        closed = await services.counter("closed", 0, 60)  # limit 0 is allowed: all rejected
        assert (closed.allowed, closed.limit, closed.remaining) == (False, 0, 0)
        assert await services.reserve("b", 1, 1) == 0.0
        assert await services.reserve("b", 1, 1, LimitPolicy()) == pytest.approx(1.0, abs=0.1)
        for limit, window, cost in ((-1, 60, 1), (1, 0, 1), (1, 60, 0)):
            with pytest.raises(ValueError, match="counter"):
                await services.counter("k", limit, window, cost=cost)
        await services.aclose()  # nothing to close

    asyncio.run(scenario())


def test_an_idle_client_is_closed_only_when_no_call_is_in_flight() -> None:
    from a6runner._redis import TargetClient

    target = RedisTarget(nodes=(("127.0.0.1", 1),), keepalive_timeout=30.0)

    async def scenario() -> None:
        closed: list[TargetClient] = []
        client = TargetClient(target, closed.append)
        client._touch()
        assert client._idle_timer is not None
        client._idle_timer.cancel()
        client._in_flight = 1
        client._last_used -= 100
        client._check_idle()  # due, but a call is running: look again later
        assert closed == [] and client._idle_timer is not None
        client._idle_timer.cancel()
        client._in_flight = 0
        client._last_used += 90  # used 10 s ago: not idle long enough
        client._check_idle()
        assert closed == [] and client._idle_timer is not None
        client._last_used -= 30
        client._check_idle()
        assert closed == [client] and client._idle_timer is None
        await client.aclose()

    asyncio.run(scenario())
