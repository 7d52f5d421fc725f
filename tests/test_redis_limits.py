"""Limits kept in Redis, against real redis-server processes started here (one server and a
3-node cluster, each once for this module): two runner processes ("gateway nodes")
sharing one count, windows reset by Redis, limit-req's bucket in Redis, Redis stopped or
hung mid-run, EVALSHA and NOSCRIPT, credentials, keepalive, and the services API."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from doc_blocks import python_file
from redis_servers import RedisClusterNodes, RedisServer, free_port, running

from a6runner import LimitPolicy, LimitStoreError, Plugin, Request, conf_fingerprint
from a6runner import _redis as redis_module
from a6runner.testing import Client, Reply, RunnerHandle, RunnerProcess, run_runner, spawn_runner

pytestmark = pytest.mark.runtime  # run once (compiled kernels) by make test: see pyproject

SERVED_BY = str(Path(__file__).with_name("limit_plugins.py"))
PASSWORD = "s3cret-Pa55word-never-logged"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with running(RedisServer()) as started:
        yield started


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    with running(RedisClusterNodes()) as started:
        yield started


class Backend:
    """One of the two Redis policies: its conf fields and a client to look inside."""

    def __init__(self, policy: dict[str, Any], client: Any, servers: list[redis.Redis]) -> None:
        self.policy = policy
        self.client = client
        self.servers = servers  # a plain client of each server (each cluster node)


@pytest.fixture(params=["redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "redis":
        single: RedisServer = request.getfixturevalue("server")
        policy = {"policy": "redis", "redis_host": single.host, "redis_port": single.port}
        client: Any = single.client()
        servers = [single.client()]
    else:
        nodes: RedisClusterNodes = request.getfixturevalue("cluster")
        policy = {
            "policy": "redis-cluster",
            "redis_cluster_nodes": nodes.addresses[:2],
            "redis_cluster_name": "a6runner-test",
        }
        client = nodes.client()
        servers = [node.client() for node in nodes.nodes]
    for c in servers:
        c.flushall()
    try:
        yield Backend(policy, client, servers)
    finally:
        client.close()
        for c in servers:
            c.close()


@pytest.fixture(scope="module")
def gateway_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunnerProcess, RunnerProcess]]:
    """Two runners as two gateway nodes would run them: each its own process and socket
    (the second with two workers: each worker has its own Redis pool). Both serve the
    services page's example plugin too; the first logs at debug level."""
    example = tmp_path_factory.mktemp("docs") / "daily_quota.py"
    example.write_text(services_example(), encoding="utf-8")
    plugins = ["--plugins", SERVED_BY, "--plugins", str(example)]
    with (
        tempfile.TemporaryDirectory(prefix="a6runner-test-") as sockets,
        spawn_runner(["--log-level", "debug", *plugins], socket_path=f"{sockets}/a") as first,
        spawn_runner(["--workers", "2", *plugins], socket_path=f"{sockets}/b") as second,
    ):
        yield first, second


def services_example() -> str:
    """The plugin of the site's "Runner services" page, as written there."""
    return python_file("writing-plugins/services.md", "my_plugins/daily_quota.py")


def daily_quota_plugin() -> type[Plugin]:
    namespace: dict[str, Any] = {}
    exec(
        compile(services_example(), "docs/writing-plugins/services.md (daily_quota.py)", "exec"),
        namespace,
    )
    plugin: type[Plugin] = namespace["DailyQuota"]
    return plugin


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    """A runner in this process, for the scenarios that stop Redis and for coverage."""
    plugins = [Enter, daily_quota_plugin()]
    with (
        tempfile.TemporaryDirectory(prefix="a6runner-test-") as sockets,
        run_runner(plugins=plugins, bundled=True, socket_path=f"{sockets}/runner") as handle,
    ):
        yield handle


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


entered = threading.Event()


class Enter(Plugin):
    """Marks that a call reached the runner (set from the runner's thread)."""

    name = "test-enter"

    def request_filter(self, conf: object, req: Request) -> None:
        entered.set()


def quota(reply: Reply) -> tuple[str | None, str | None, str | None]:
    entries = reply.resp_headers if reply.action == "rewrite" else reply.headers
    found = {name.lower(): value for name, value in entries}
    return (
        found.get("x-ratelimit-limit"),
        found.get("x-ratelimit-remaining"),
        found.get("x-ratelimit-reset"),
    )


def count_key(conf: dict[str, Any], client_key: str) -> str:
    return f"limit-count:{conf_fingerprint(conf)}:{client_key}"


# -- two gateway nodes, one count ------------------------------------------------------------


def test_two_gateway_nodes_share_one_count(
    gateway_nodes: tuple[RunnerProcess, RunnerProcess], backend: Backend
) -> None:
    conf = {
        "count": 10,
        "time_window": 60,
        "key": "remote_addr",
        "rejected_code": 429,
        **backend.policy,
    }
    with gateway_nodes[0].client() as a, gateway_nodes[1].client() as b:
        nodes = [a, b]
        tokens = [c.prepare_conf([("served-by", {}), ("limit-count", conf)]) for c in nodes]
        replies = [
            nodes[i % 2].http_req_call(tokens[i % 2], src_ip="127.0.0.20") for i in range(30)
        ]
        other = [nodes[i % 2].http_req_call(tokens[i % 2], src_ip="127.0.0.21") for i in range(3)]
    passed = [r for r in replies if r.action == "rewrite"]
    rejected = [r for r in replies if r.action == "stop"]
    assert (len(passed), len(rejected)) == (10, 20)
    assert replies[:10] == passed  # the first ten, whichever node they went through
    assert {r.status for r in rejected} == {429}
    # both nodes (three processes) answered; every reply carries the shared quota
    assert len({dict(r.resp_headers or r.headers)["X-Served-By"] for r in replies}) >= 2
    assert [quota(r)[:2] for r in passed] == [("10", str(n)) for n in range(9, -1, -1)]
    assert {quota(r)[:2] for r in rejected} == {("10", "0")}
    assert all(0 <= int(quota(r)[2] or -1) <= 60 for r in replies)
    # another client address has a count of its own
    assert [r.action for r in other] == ["rewrite"] * 3
    assert [quota(r)[1] for r in other] == ["9", "8", "7"]
    assert int(backend.client.get(count_key(conf, "127.0.0.20"))) == 10


def test_the_window_resets_when_redis_expires_it(
    gateway_nodes: tuple[RunnerProcess, RunnerProcess], backend: Backend
) -> None:
    conf = {"count": 2, "time_window": 1, **backend.policy}
    key = count_key(conf, "127.0.0.22")
    with gateway_nodes[0].client() as a, gateway_nodes[1].client() as b:
        token_a = a.prepare_conf([("limit-count", conf)])
        token_b = b.prepare_conf([("limit-count", conf)])
        first = [a.http_req_call(token_a, src_ip="127.0.0.22") for _ in range(2)]
        assert [r.action for r in first] == ["rewrite", "rewrite"]
        rejected = b.http_req_call(token_b, src_ip="127.0.0.22")
        assert (rejected.action, quota(rejected)[:2]) == ("stop", ("2", "0"))
        assert quota(rejected)[2] in ("0", "1")
        # wait for Redis itself to end the window (the key expires), not for a clock
        deadline = time.monotonic() + 30
        while backend.client.pttl(key) != -2:
            assert time.monotonic() < deadline, "the window never ended"
            time.sleep(0.02)
        again = b.http_req_call(token_b, src_ip="127.0.0.22")
        assert (again.action, quota(again)[:2]) == ("rewrite", ("2", "1"))


def test_limit_req_bucket_in_redis_is_shared_by_the_nodes(
    gateway_nodes: tuple[RunnerProcess, RunnerProcess], backend: Backend
) -> None:
    conf = {"rate": 5, "burst": 1, **backend.policy}

    async def scenario() -> tuple[float, list[Reply], list[float]]:
        clients = [await node.async_client() for node in gateway_nodes for _ in range(3)]
        try:
            tokens = [await c.prepare_conf([("limit-req", conf)]) for c in clients]
            start = time.monotonic()

            async def call(i: int) -> tuple[Reply, float]:
                reply = await clients[i].http_req_call(tokens[i])
                return reply, time.monotonic()

            done = await asyncio.gather(*(call(i) for i in range(6)))
            return start, [r for r, _ in done], [t for _, t in done]
        finally:
            for c in clients:
                await c.close()

    start, replies, finished = asyncio.run(scenario())
    assert [r.action for r in replies] == ["none"] * 6  # delayed, never rejected
    # one bucket for both nodes: one token at once, then one every 0.2 s (a bucket per
    # node would let the last through after about 0.4 s)
    assert max(finished) - start >= 1.0


def test_limit_req_redis_rejects_like_the_local_policy(apisix: Client, backend: Backend) -> None:
    no_burst = apisix.prepare_conf([("limit-req", {"rate": 5, **backend.policy})])
    reply = apisix.http_req_call(no_burst)
    assert (reply.action, reply.status, reply.body) == ("stop", 503, None)
    never_refills = apisix.prepare_conf([("limit-req", {"rate": 0, "burst": 2, **backend.policy})])
    actions = [apisix.http_req_call(never_refills).action for _ in range(4)]
    assert actions == ["none", "none", "stop", "stop"]


# -- Redis failing mid-run ----------------------------------------------------------------------


@pytest.fixture
def restartable() -> Iterator[RedisServer]:
    with running(RedisServer()) as started:
        yield started


def test_redis_stopped_mid_run(
    apisix: Client, restartable: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = {"policy": "redis", "redis_host": restartable.host, "redis_port": restartable.port}
    base = {"count": 3, "time_window": 60, "rejected_code": 429, **policy}
    strict = apisix.prepare_conf([("limit-count", base)])
    lenient = apisix.prepare_conf([("limit-count", {**base, "allow_degradation": True})])
    req_strict = apisix.prepare_conf([("limit-req", {"rate": 100, "burst": 5, **policy})])
    req_lenient = apisix.prepare_conf(
        [("limit-req", {"rate": 100, "burst": 5, "allow_degradation": True, **policy})]
    )
    say = apisix.prepare_conf([("say", {"body": "still here"})])
    assert quota(apisix.http_req_call(strict))[:2] == ("3", "2")
    assert quota(apisix.http_req_call(lenient))[:2] == ("3", "2")

    restartable.stop()
    for _ in range(3):
        failed = apisix.http_req_call(strict)
        assert (failed.action, failed.status) == ("stop", 500)
        assert json.loads(failed.body or b"") == {"error_msg": "failed to limit count"}
        assert failed.header("X-RateLimit-Limit") is None
        degraded = apisix.http_req_call(lenient)
        assert (degraded.action, degraded.resp_headers) == ("none", [])
        failed = apisix.http_req_call(req_strict)
        assert (failed.action, failed.status, failed.body) == ("stop", 500, None)
        assert apisix.http_req_call(req_lenient).action == "none"
        assert apisix.http_req_call(say).body == b"still here"  # other routes unaffected
    down = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(down) == 1  # logged once when it went down, not once per call
    assert f"redis {restartable.address} db 0 failed: ConnectionError" in down[0]

    restartable.start()  # an empty Redis (no persistence): a fresh window
    replies = [apisix.http_req_call(strict) for _ in range(4)]
    assert [r.action for r in replies] == ["rewrite"] * 3 + ["stop"]
    assert replies[3].status == 429  # limiting resumed
    assert apisix.http_req_call(req_strict).action == "none"
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_hung_redis_never_stalls_other_routes(
    runner: RunnerHandle, restartable: RedisServer
) -> None:
    conf = {
        "count": 5,
        "time_window": 60,
        "policy": "redis",
        "redis_host": restartable.host,
        "redis_port": restartable.port,
        "redis_timeout": 60_000,  # the call waits for Redis for as long as the test needs
    }

    async def scenario() -> None:
        limited, other = await runner.async_client(), await runner.async_client()
        try:
            token = await limited.prepare_conf([("test-enter", {}), ("limit-count", conf)])
            say = await other.prepare_conf([("say", {"body": "not waiting"})])
            assert (await limited.http_req_call(token)).action == "rewrite"  # pool connected
            restartable.pause()
            entered.clear()
            pending = asyncio.create_task(limited.http_req_call(token))
            assert await asyncio.to_thread(entered.wait, 30)
            # limit-count now waits for the paused Redis; another route answers meanwhile
            assert (await other.http_req_call(say)).body == b"not waiting"
            assert not pending.done()
            restartable.resume()
            assert quota(await pending)[:2] == ("5", "3")
        finally:
            restartable.resume()
            await limited.close()
            await other.close()

    asyncio.run(scenario())


def test_a_timeout_is_a_failure_and_frees_the_call(
    apisix: Client, restartable: RedisServer
) -> None:
    conf = {
        "count": 5,
        "time_window": 60,
        "policy": "redis",
        "redis_host": restartable.host,
        "redis_port": restartable.port,
        "redis_timeout": 1,
    }
    token = apisix.prepare_conf([("limit-count", conf)])
    restartable.pause()
    try:
        reply = apisix.http_req_call(token)
    finally:
        restartable.resume()
    assert (reply.action, reply.status) == ("stop", 500)


def test_failures_are_reported_again_while_redis_stays_down(
    apisix: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "REPORT_EVERY", 0.0)
    caplog.set_level(logging.ERROR, "a6runner")
    conf = {"count": 5, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1"}
    token = apisix.prepare_conf([("limit-count", {**conf, "redis_port": free_port()})])
    for _ in range(3):
        assert apisix.http_req_call(token).status == 500
    messages = [r.getMessage() for r in caplog.records]
    assert sum("still failing" in m for m in messages) == 2
    assert "(3 calls)" in messages[-1]


# -- scripts, credentials, pools -------------------------------------------------------------


def command_calls(backend: Backend, command: str) -> int:
    """How often ``command`` ran, summed over the servers (each node of a cluster)."""
    total = 0
    for client in backend.servers:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
        total += int(stats.get("calls", 0))
    return total


def test_scripts_run_by_evalsha_and_reload_after_noscript(apisix: Client, backend: Backend) -> None:
    for c in backend.servers:
        c.script_flush()  # as a new or restarted Redis
        c.config_resetstat()
    conf = {"count": 100, "time_window": 60, **backend.policy}
    token = apisix.prepare_conf([("limit-count", conf)])
    for _ in range(5):
        assert apisix.http_req_call(token).action == "rewrite"
    assert (command_calls(backend, "eval"), command_calls(backend, "evalsha")) == (
        1,  # the first EVALSHA met NOSCRIPT; EVAL ran and cached the script
        5,
    )
    for c in backend.servers:
        c.script_flush()  # while the pools stay connected
    replies = [apisix.http_req_call(token) for _ in range(2)]
    assert [quota(r)[1] for r in replies] == ["94", "93"]
    assert command_calls(backend, "eval") == 2


def test_redis_database_and_username_password(apisix: Client) -> None:
    with running(RedisServer(["--requirepass", PASSWORD])) as secured:
        admin = secured.client(password=PASSWORD)
        admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~*", "+@all")
        policy = {"policy": "redis", "redis_host": secured.host, "redis_port": secured.port}
        conf = {"count": 5, "time_window": 60, "redis_password": PASSWORD, "redis_database": 3}
        token = apisix.prepare_conf([("limit-count", {**conf, **policy})])
        assert quota(apisix.http_req_call(token, src_ip="127.0.0.30"))[1] == "4"
        key = count_key({**conf, **policy}, "127.0.0.30")
        assert admin.get(key) is None
        assert int(secured.client(password=PASSWORD, db=3).get(key)) == 1
        as_app = apisix.prepare_conf(
            [("limit-count", {**conf, **policy, "redis_username": "app", "count": 7})]
        )
        assert quota(apisix.http_req_call(as_app))[1] == "6"
        admin.close()


def test_redis_over_tls(apisix: Client, caplog: pytest.LogCaptureFixture) -> None:
    with running(RedisServer(tls=True)) as secured:
        policy = {"policy": "redis", "redis_host": secured.host, "redis_port": secured.port}
        conf = {"count": 5, "time_window": 60, "redis_ssl": True, **policy}
        token = apisix.prepare_conf([("limit-count", conf)])
        assert quota(apisix.http_req_call(token))[1] == "4"
        # verified, the self-signed certificate is refused
        verified = apisix.prepare_conf([("limit-count", {**conf, "redis_ssl_verify": True})])
        assert apisix.http_req_call(verified).status == 500
        plain = apisix.prepare_conf([("limit-count", {**conf, "redis_ssl": False})])
        assert apisix.http_req_call(plain).status == 500
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_passwords_never_reach_a_log_line(apisix: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's too
    with running(RedisServer(["--requirepass", "the-right-one"])) as secured:
        policy = {"policy": "redis", "redis_host": secured.host, "redis_port": secured.port}
        wrong = {"count": 5, "time_window": 60, "redis_password": PASSWORD, **policy}
        token = apisix.prepare_conf([("limit-count", wrong)])
        reply = apisix.http_req_call(token)  # AUTH refused
        assert (reply.action, reply.status) == ("stop", 500)
        bad_field = apisix.prepare_conf([("limit-count", {**wrong, "redis_port": PASSWORD})])
        assert apisix.http_req_call(bad_field).action == "none"  # the entry was skipped
    dead = {**wrong, "redis_port": free_port()}
    assert apisix.http_req_call(apisix.prepare_conf([("limit-count", dead)])).status == 500
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed: AuthenticationError" in logged
    assert "conf entry 'limit-count' skipped: redis_port must be" in logged
    assert PASSWORD not in logged
    assert PASSWORD not in repr(LimitPolicy.from_conf(wrong))


def test_passwords_never_reach_a_runner_process_log(
    gateway_nodes: tuple[RunnerProcess, RunnerProcess],
) -> None:
    node = gateway_nodes[0]  # logging at debug level
    policy = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
    conf = {"count": 5, "time_window": 60, "redis_password": PASSWORD, **policy}
    with node.client() as apisix:
        token = apisix.prepare_conf([("limit-count", conf)])
        assert apisix.http_req_call(token).status == 500
        bad = apisix.prepare_conf([("limit-count", {**conf, "redis_timeout": PASSWORD})])
        assert apisix.http_req_call(bad).action == "none"
    log = node.log()
    assert "redis_timeout must be an integer" in log
    assert re.search(r"redis 127\.0\.0\.1:\d+ db 0 failed", log)
    assert PASSWORD not in log


def test_an_unused_pool_closes_its_connections(apisix: Client, restartable: RedisServer) -> None:
    server = restartable
    policy = {"policy": "redis", "redis_host": server.host, "redis_port": server.port}
    conf = {"count": 5, "time_window": 60, "redis_keepalive_timeout": 1000, **policy}
    with server.client() as observer:
        observer.client_setname("observer")

        def runner_connections() -> int:
            return sum(1 for c in observer.client_list() if c["name"] != "observer")

        before = runner_connections()
        token = apisix.prepare_conf([("limit-count", conf)])
        assert apisix.http_req_call(token).action == "rewrite"
        assert runner_connections() == before + 1
        deadline = time.monotonic() + 30
        while runner_connections() > before:  # closed by the runner once idle for 1 s
            assert time.monotonic() < deadline, "the idle connection was never closed"
            time.sleep(0.05)
        assert quota(apisix.http_req_call(token))[1] == "3"  # a new connection, same count


# -- the services API: a plugin author's own cluster-wide quota ---------------------------------


def test_the_readme_quota_plugin_holds_across_nodes(
    gateway_nodes: tuple[RunnerProcess, RunnerProcess], apisix: Client, server: RedisServer
) -> None:
    conf = {"per_day": 3, "policy": "redis", "redis_host": server.host, "redis_port": server.port}
    # the example in this process and in a runner process: one count in Redis
    with gateway_nodes[1].client() as there:
        nodes = [(apisix, apisix.prepare_conf([("daily-quota", conf)]))]
        nodes.append((there, there.prepare_conf([("daily-quota", conf)])))
        key = [("x-api-key", "k1")]
        replies = [nodes[i % 2][0].http_req_call(nodes[i % 2][1], headers=key) for i in range(4)]
        other = there.http_req_call(nodes[1][1], headers=[("x-api-key", "k2")])
    assert [r.action for r in replies] == ["rewrite"] * 3 + ["stop"]
    assert (replies[3].status, replies[3].body) == (429, b"daily quota used up")
    assert [r.resp_headers for r in replies[:3]] == [
        [("X-Quota-Remaining", str(n))] for n in (2, 1, 0)
    ]
    assert other.resp_headers == [("X-Quota-Remaining", "2")]


def test_services_raise_limit_store_error_when_redis_is_unreachable() -> None:
    from a6runner._services import LocalServices

    target = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
    policy = LimitPolicy.from_conf(target)
    seen: list[LimitStoreError] = []

    async def scenario() -> None:
        services = LocalServices()
        for call in (services.counter("k", 1, 1, policy), services.reserve("k", 1, 1, policy)):
            try:
                await call
            except LimitStoreError as exc:
                seen.append(exc)
        await services.aclose()

    asyncio.run(scenario())
    assert len(seen) == 2 and all(str(e).startswith("redis 127.0.0.1:") for e in seen)
