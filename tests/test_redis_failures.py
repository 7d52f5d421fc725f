"""Redis failures contained (limit-count and limit-req with ``policy`` redis and
redis-cluster), over the real socket, with 1 worker and with ``--workers 2``: a Redis that
refuses connections, one that accepts them and never answers (a listener that never
answers), one that flaps, a Cluster node that disappears. A call waits at most its
``redis_timeout`` in all, then degrades or answers the plugin's error; other routes are
answered meanwhile; counting resumes when Redis is back; each failing server is logged
once, then at most every 10 s, on each process's fake clock (tests/probe_plugins.py)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot
from redis_servers import HungListener, RedisClusterNodes, RedisServer, running
from worker_connections import connection_on_each_worker

from a6runner import conf_fingerprint
from a6runner.testing import Client, Reply, RunnerProcess, spawn_runner

pytestmark = pytest.mark.runtime

SUPPORT = str(Path(__file__).with_name("support_plugins.py"))
PROBES = str(Path(__file__).with_name("probe_plugins.py"))
FAILED = {"error_msg": "failed to limit count"}


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def served_by(client: Client) -> int:
    reply = client.http_req_call(client.prepare_conf([("which-process", {})]))
    return int(reply.body or b"0")


def advance(client: Client, seconds: float) -> None:
    """Move the fake clock of the process serving ``client`` (in place from the first)."""
    client.http_req_call(client.prepare_conf([("fake-clock", {"advance": seconds})]))


@contextlib.contextmanager
def serving(workers: int, folder: Path) -> Iterator[tuple[RunnerProcess, dict[int, Client]]]:
    """A runner process (``workers``) and one connection to each serving process, on
    whose clocks the Redis failure logs are timed from now on."""
    args = ["--plugins", SUPPORT, "--plugins", PROBES, "--workers", str(workers)]
    with spawn_runner(args) as runner:
        if workers == 1:
            client = runner.client()
            clients = {served_by(client): client}
        else:
            clients = connection_on_each_worker(runner, folder)
        try:
            for client in clients.values():
                advance(client, 0)
            yield runner, clients
        finally:
            for client in clients.values():
                client.close()


def another_connection_to(runner: RunnerProcess, pid: int) -> Client:
    for _ in range(2000):
        client = runner.client()
        if served_by(client) == pid:
            return client
        client.close()
    raise AssertionError(f"no connection reached process {pid}")


def quota(reply: Reply) -> str | None:
    """X-RateLimit-Remaining of a call that passed."""
    return dict(reply.resp_headers).get("X-RateLimit-Remaining")


def assert_failed_strict(reply: Reply) -> None:
    assert (reply.action, reply.status) == ("stop", 500)
    assert json.loads(reply.body or b"") == FAILED


# -- a Redis that refuses, then flaps -------------------------------------------------------


def test_a_redis_that_refuses_then_flaps(workers: int, tmp_path: Path) -> None:
    with running(RedisServer()) as redis, serving(workers, tmp_path) as (runner, clients):
        policy = {"policy": "redis", "redis_host": redis.host, "redis_port": redis.port}
        count = {"count": 1000, "time_window": 600, **policy}
        confs = {
            "strict": [("limit-count", count)],
            "lenient": [("limit-count", {**count, "allow_degradation": True})],
            "req-strict": [("limit-req", {"rate": 1000, "burst": 100, **policy})],
            "req-lenient": [
                ("limit-req", {"rate": 1000, "burst": 100, "allow_degradation": True, **policy})
            ],
            "local": [("limit-count", {"count": 1000, "time_window": 600})],
        }
        tokens = {
            pid: {name: c.prepare_conf(conf) for name, conf in confs.items()}
            for pid, c in clients.items()
        }
        for _ in range(2):  # down, up, down, up
            for pid, apisix in clients.items():
                assert quota(apisix.http_req_call(tokens[pid]["strict"])) is not None
            redis.stop()  # connections refused
            for pid, apisix in clients.items():
                token = tokens[pid]
                for _ in range(3):
                    assert_failed_strict(apisix.http_req_call(token["strict"]))
                    degraded = apisix.http_req_call(token["lenient"])
                    assert (degraded.action, degraded.resp_headers) == ("none", [])
                    failed = apisix.http_req_call(token["req-strict"])
                    assert (failed.action, failed.status, failed.body) == ("stop", 500, None)
                    assert apisix.http_req_call(token["req-lenient"]).action == "none"
                    assert quota(apisix.http_req_call(token["local"])) is not None
            redis.start()  # the same port, an empty Redis: counting resumes, no restart
            for n, (pid, apisix) in enumerate(clients.items()):  # one count for all
                assert quota(apisix.http_req_call(tokens[pid]["strict"])) == str(999 - n)
                assert apisix.http_req_call(tokens[pid]["req-strict"]).action == "none"
        log = runner.log()
    target = f"redis {redis.address} db 0"
    assert log.count(f"{target} failed: ConnectionError") == 2 * workers  # once per outage
    assert log.count(f"{target} answers again after") == 2 * workers
    assert "still failing" not in log  # the fake clocks never moved


# -- a Redis that accepts connections and never answers ---------------------------------------


def test_a_redis_that_never_answers_costs_a_call_its_timeout_and_no_other_call(
    workers: int, tmp_path: Path
) -> None:
    with running(HungListener()) as hung, serving(workers, tmp_path) as (runner, clients):
        policy = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": hung.ports[0]}
        short = {"count": 5, "time_window": 60, "redis_timeout": 100, **policy}
        for apisix in clients.values():
            strict = apisix.prepare_conf([("limit-count", short)])
            assert_failed_strict(apisix.http_req_call(strict))
            lenient = apisix.prepare_conf([("limit-count", {**short, "allow_degradation": True})])
            assert apisix.http_req_call(lenient).action == "none"
            req = {"rate": 5, "burst": 5, "redis_timeout": 100, **policy}
            failed = apisix.http_req_call(apisix.prepare_conf([("limit-req", req)]))
            assert (failed.action, failed.status) == ("stop", 500)
        # calls that wait for it (a long redis_timeout): meanwhile, every process answers
        # a call of another route on another connection, with a local limit
        waiting = {**short, "redis_timeout": 600_000}
        local = [("limit-count", {"count": 5, "time_window": 60})]
        with ThreadPoolExecutor(len(clients)) as pool:
            accepted = hung.accepted()
            pending = []
            for n, (pid, apisix) in enumerate(clients.items()):
                token = apisix.prepare_conf([("limit-count", waiting)])
                pending.append(pool.submit(apisix.http_req_call, token))
                accepted += 1
                hung.wait_accepted(accepted)  # the call waits for the listener's answer
                with another_connection_to(runner, pid) as other:  # (one count for all)
                    assert quota(other.http_req_call(other.prepare_conf(local))) == str(4 - n)
            assert not any(call.done() for call in pending)
            hung.close()  # the listener's connections close: the waiting calls fail
            for call in pending:
                assert_failed_strict(call.result(60))
        log = runner.log()
    assert "no answer within its redis_timeout (100 ms)" in log


def test_a_cluster_call_waits_its_timeout_in_all_not_per_node_or_retry(
    workers: int, tmp_path: Path
) -> None:
    with running(HungListener(3)) as hung, serving(workers, tmp_path) as (runner, clients):
        conf = {
            "count": 5,
            "time_window": 60,
            "policy": "redis-cluster",
            "redis_cluster_nodes": hung.addresses,
            "redis_cluster_name": "hung",
            "redis_timeout": 200,
            "allow_degradation": True,
        }
        calls = 0
        for apisix in clients.values():
            token = apisix.prepare_conf([("limit-count", conf)])
            for _ in range(2):
                assert apisix.http_req_call(token).action == "none"  # degraded
                calls += 1
        # each call asked one node (none, if its 200 ms were up before it connected), which
        # never answered: it tried no other node and no retry
        assert 0 < hung.accepted() <= calls
        log = runner.log()
    assert "redis-cluster hung" in log and "no answer within its redis_timeout (200 ms)" in log


# -- a Cluster node that disappears -----------------------------------------------------------


def test_a_cluster_node_that_disappears_is_logged_once_then_every_10_s(
    workers: int, tmp_path: Path
) -> None:
    with running(RedisClusterNodes()) as nodes, serving(workers, tmp_path) as (runner, clients):
        for node in nodes.nodes:  # the other masters keep serving their slots
            with node.client() as admin:
                admin.config_set("cluster-require-full-coverage", "no")
        conf: dict[str, Any] = {
            "count": 1000,
            "time_window": 600,
            "policy": "redis-cluster",
            "redis_cluster_nodes": nodes.addresses,
            "redis_cluster_name": "disappearing",
        }
        fingerprint = conf_fingerprint(conf)
        dead = nodes.nodes[2]  # the last third of the slots
        addresses = [f"127.0.0.{i}" for i in range(1, 31)]
        on_dead = {
            a for a in addresses if key_slot(f"limit-count:{fingerprint}:{a}".encode()) >= 10922
        }
        assert 0 < len(on_dead) < len(addresses)
        tokens = {pid: c.prepare_conf([("limit-count", conf)]) for pid, c in clients.items()}
        for pid, apisix in clients.items():
            for address in addresses:
                assert apisix.http_req_call(tokens[pid], src_ip=address).action == "rewrite"
        dead.stop()
        for _ in range(6):  # 25 s of each process's fake clock, 5 s at a time
            for pid, apisix in clients.items():
                for address in addresses:
                    reply = apisix.http_req_call(tokens[pid], src_ip=address)
                    if address in on_dead:
                        assert_failed_strict(reply)
                    else:
                        assert reply.action == "rewrite" and quota(reply) is not None
                advance(apisix, 5)
        log = runner.log()
        node = f"redis-cluster disappearing ({', '.join(nodes.addresses)}) node {dead.address}"
        assert log.count(f"{node} failed:") == workers  # once per process...
        assert log.count(f"{node} still failing after") == 2 * workers  # ...then at 10, 20 s
        assert log.count(" failed:") == workers  # no other node, nor the Cluster as a whole
        assert "answers again" not in log  # the other nodes' answers are theirs
        dead.start()  # back: counting resumes, no restart (once the node has rejoined)
        for pid, apisix in clients.items():
            for address in on_dead:
                deadline = time.monotonic() + 60
                while quota(apisix.http_req_call(tokens[pid], src_ip=address)) is None:
                    assert time.monotonic() < deadline, "the node never answered again"
                    time.sleep(0.05)
        log = runner.log()
    assert log.count(f"{node} answers again after 30.0 s") == workers


# -- nothing about Redis blocks the event loop -------------------------------------------------


def test_the_first_redis_conf_imports_redis_off_the_event_loop(
    workers: int, tmp_path: Path
) -> None:
    with running(RedisServer()) as redis, serving(workers, tmp_path) as (_, clients):
        conf = {"count": 5, "time_window": 60, "policy": "redis", "redis_host": redis.host}
        conf["redis_port"] = redis.port
        for apisix in clients.values():
            watch = apisix.prepare_conf([("import-watch", {"module": "redis.asyncio"})])
            assert apisix.http_req_call(watch).body == b"not imported"
            token = apisix.prepare_conf([("limit-count", conf)])
            assert quota(apisix.http_req_call(token)) is not None  # counted in Redis
            assert apisix.http_req_call(watch).body == b"imported by a6runner-import-redis"


def test_calls_wait_for_the_import_that_a_conf_began(tmp_path: Path) -> None:
    """Two first calls at once, in a fresh process: both wait for the one import."""
    with running(RedisServer()) as redis, serving(1, tmp_path) as (runner, clients):
        (pid,) = clients
        conf = {"count": 5, "time_window": 60, "policy": "redis", "redis_host": redis.host}
        conf["redis_port"] = redis.port
        with another_connection_to(runner, pid) as second:
            first = clients[pid]
            tokens = [c.prepare_conf([("limit-count", conf)]) for c in (first, second)]
            replies: list[Reply] = []
            threads = [
                threading.Thread(target=lambda c=c, t=t: replies.append(c.http_req_call(t)))
                for c, t in zip((first, second), tokens, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(quota(r) or "" for r in replies) == ["3", "4"]  # one count, two calls
