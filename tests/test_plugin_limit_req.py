"""limit-req: one runner-wide token bucket per conf; excess requests are delayed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest

from a6runner import ConfError, Plugin, Request
from a6runner.plugins.limit_req import LimitReq
from a6runner.testing import Client, RunnerHandle, run_runner

# Markers around limit-req in a chain, set from the runner's thread: "entered" when the
# request reaches the runner, "released" when limit-req let it continue.
entered = threading.Event()
released = threading.Event()


class Enter(Plugin):
    name = "test-enter"

    def request_filter(self, conf: object, req: Request) -> None:
        entered.set()


class Leave(Plugin):
    name = "test-leave"

    def request_filter(self, conf: object, req: Request) -> None:
        released.set()


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerHandle]:
    with run_runner(plugins=[Enter, Leave], bundled=True) as handle:
        yield handle


@pytest.fixture
def apisix(runner: RunnerHandle) -> Iterator[Client]:
    with runner.client() as client:
        yield client


@pytest.mark.slow
def test_simultaneous_requests_are_delayed_not_rejected(runner: RunnerHandle) -> None:
    async def scenario() -> tuple[float, list[tuple[str | None, float]]]:
        clients = [await runner.async_client() for _ in range(6)]
        try:
            token = await clients[0].prepare_conf([("limit-req", {"rate": 5, "burst": 1})])

            async def call(client: object) -> tuple[str | None, float]:
                reply = await client.http_req_call(token)  # type: ignore[attr-defined]
                return reply.action, time.monotonic()

            start = time.monotonic()
            done = await asyncio.gather(*(call(c) for c in clients))
            return start, done
        finally:
            for c in clients:
                await c.close()

    start, done = asyncio.run(scenario())
    assert [action for action, _ in done] == ["none"] * 6
    # One token at once, then one every 0.2 s: the sixth is due 1 s after the first.
    assert max(t for _, t in done) - start >= 1.0


@pytest.mark.parametrize(
    "conf",
    [{}, "", {"rate": 5}, {"rate": 5, "burst": 0}],
    ids=["empty-object", "empty-conf", "no-burst", "burst-0"],
)
def test_no_burst_answers_503_with_no_body(apisix: Client, conf: object) -> None:
    token = apisix.prepare_conf([("limit-req", conf)])
    for _ in range(3):
        reply = apisix.http_req_call(token)
        assert (reply.action, reply.status, reply.body, reply.headers) == ("stop", 503, None, [])


def test_rate_0_lets_the_first_burst_through_then_rejects(apisix: Client) -> None:
    token = apisix.prepare_conf([("limit-req", {"rate": 0, "burst": 2})])
    assert [apisix.http_req_call(token).action for _ in range(2)] == ["none", "none"]
    for _ in range(2):  # the bucket never refills: rejected, not delayed forever
        reply = apisix.http_req_call(token)
        assert (reply.action, reply.status, reply.body) == ("stop", 503, None)


def test_within_burst_passes(apisix: Client) -> None:
    token = apisix.prepare_conf([("limit-req", {"rate": 0.001, "burst": 3})])
    for _ in range(3):  # the bucket starts full: three go at once, none waits
        assert apisix.http_req_call(token).action == "none"


def test_a_delayed_request_does_not_hold_up_other_connections(runner: RunnerHandle) -> None:
    async def scenario() -> None:
        limited, other = await runner.async_client(), await runner.async_client()
        try:
            chain = [
                ("test-enter", {}),
                ("limit-req", {"rate": 0.001, "burst": 1}),
                ("test-leave", {}),
            ]
            token = await limited.prepare_conf(chain)
            say = await other.prepare_conf([("say", {"body": "not waiting"})])
            assert (await limited.http_req_call(token)).action == "none"  # took the only token
            entered.clear()
            released.clear()

            pending = asyncio.create_task(limited.http_req_call(token))  # due in 1000 s
            assert await asyncio.to_thread(entered.wait, 10)
            reply = await other.http_req_call(say)
            assert reply.body == b"not waiting"
            # The say answer came while limit-req was still holding the other request.
            assert not released.is_set()
            assert not pending.done()
            # APISIX gives up on the delayed request: the runner drops it and serves on.
            pending.cancel()
            await limited.close()
            assert (await other.http_req_call(say)).body == b"not waiting"
            assert not released.is_set()
        finally:
            await limited.close()
            await other.close()

    asyncio.run(scenario())


def test_buckets_are_per_conf_token(apisix: Client) -> None:
    slow = apisix.prepare_conf([("limit-req", {"rate": 0.001, "burst": 1})])
    assert apisix.http_req_call(slow).action == "none"
    other = apisix.prepare_conf([("limit-req", {"rate": 0.001, "burst": 1})])
    # A fresh conf has its own full bucket (the first one's is empty for the next 1000 s).
    assert apisix.http_req_call(other).action == "none"


@pytest.mark.parametrize(
    "conf, reason",
    [
        ({"rate": -1, "burst": 1}, "rate"),
        ({"rate": "5", "burst": 1}, "rate"),
        ({"rate": True, "burst": 1}, "rate"),
        ({"rate": 5, "burst": -1}, "burst"),
        ({"rate": 5, "burst": 1.5}, "burst"),
        ({"rate": 5, "burst": "1"}, "burst"),
        ({"rate": 5, "burst": 1, "allow_degradation": "yes"}, "allow_degradation"),
        ({"rate": 5, "burst": 1, "policy": "redis"}, "redis_host is required"),
        ({"rate": 5, "burst": 1, "policy": "etcd"}, "policy must be one of"),
        ([5, 1], "JSON object"),
    ],
)
def test_bad_conf_is_rejected_and_skipped(apisix: Client, conf: object, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        LimitReq().parse_conf(json.dumps(conf).encode())
    token = apisix.prepare_conf([("limit-req", conf)])
    assert apisix.http_req_call(token).action == "none"


def test_infinite_rate_is_rejected() -> None:
    with pytest.raises(ConfError, match="finite"):
        LimitReq().parse_conf(b'{"rate": Infinity, "burst": 1}')
