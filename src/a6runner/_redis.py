"""Limits kept in Redis: one client per worker per target, one atomic Lua script per kind.

Each script runs by EVALSHA; a server that does not know it (first use, a restart, SCRIPT
FLUSH) answers NOSCRIPT and gets the source once by EVAL, which caches it again. A call
waits at most the target's ``redis_timeout`` in all (waiting for a pooled connection,
connecting, a Cluster's topology and its retry, EVALSHA and EVAL), and the client is
asyncio throughout: a dead or hung Redis costs the calls that use it that timeout at most
and never blocks the event loop. Pools reconnect by themselves once Redis is back. A
failing server (for a Cluster: each node, by the slot of the call's key) is logged when
it starts failing, at most every ``REPORT_EVERY`` seconds while it keeps failing, and when
it answers again; never with its credentials.

Imported in a thread on first use of a Redis policy (``_limits.load_redis``): redis-py is
the optional extra ``a6runner[redis]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ._limits import LimitStoreError, Quota, RedisTarget

log = logging.getLogger("a6runner.redis")

REPORT_EVERY = 10.0  # seconds between log lines about a target that keeps failing


class Script:
    """A Lua script and its SHA-1, the name EVALSHA runs it by."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


# KEYS[1] the counter; ARGV limit, window (ms), cost. Answers {allowed, used, ms left}.
# The window opens with the first call that counts; a call that does not fit is not counted.
COUNT = Script("""
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local left = redis.call('PTTL', KEYS[1])
local used = 0
if left > 0 then
  used = tonumber(redis.call('GET', KEYS[1])) or 0
else
  left = window
end
if used + cost > limit then
  return {0, used, left}
end
if used == 0 then
  redis.call('SET', KEYS[1], cost, 'PX', window)
else
  redis.call('INCRBY', KEYS[1], cost)
end
return {1, used + cost, left}
""")

# KEYS[1] the bucket: when it is full again, in microseconds of the Redis clock (so the
# gateway nodes' clocks do not matter); ARGV µs per token (0: never refills), burst.
# Answers the µs this call waits for its token, or -1 when it is refused.
RESERVE = Script("""
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
if interval == 0 then
  if (tonumber(redis.call('GET', KEYS[1])) or 0) >= burst then
    return -1
  end
  redis.call('INCR', KEYS[1])
  return 0
end
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local full_at = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now) + interval
redis.call('SET', KEYS[1], string.format('%d', full_at), 'PX', math.ceil((full_at - now) / 1000))
return math.max(0, full_at - now - burst * interval)
""")

_FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)


def _reason(exc: BaseException, target: RedisTarget) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within its redis_timeout ({target.timeout * 1000:g} ms)"
    text = f"{type(exc).__name__}: {exc}"
    # No redis-py message we know of carries the password; make sure none ever does.
    return text.replace(target.password, "***") if target.password else text


def _client_for(target: RedisTarget) -> Any:
    # No timeout of each connect, send or read: TargetClient.run bounds each call in all.
    common: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.ssl:
        common["ssl_cert_reqs"] = "required" if target.ssl_verify else "none"
        common["ssl_check_hostname"] = target.ssl_verify
    if target.cluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=target.keepalive_pool,
            ssl=target.ssl,
            retry=Retry(NoBackoff(), 1),  # one retry after a slot moved, within the timeout
            **common,
        )
    ((host, port),) = target.nodes
    pool = aioredis.BlockingConnectionPool(
        connection_class=SSLConnection if target.ssl else Connection,
        max_connections=target.keepalive_pool,
        timeout=None,  # waiting for a free connection is part of the call's timeout
        host=host,
        port=port,
        db=target.database,
        retry=Retry(NoBackoff(), 0),
        **common,
    )
    return aioredis.Redis.from_pool(pool)


@dataclass(slots=True)
class _Failing:
    """A server that fails: since when, how many calls failed, when to log it again."""

    since: float
    next_report: float
    calls: int = 0


class TargetClient:
    """This worker's client of one target, with its failure log and its idle timer."""

    def __init__(
        self,
        target: RedisTarget,
        on_idle: Callable[[TargetClient], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._client = _client_for(target)
        self._on_idle = on_idle
        self._clock = clock  # what the failure log is timed by
        self._loop = asyncio.get_running_loop()
        self._in_flight = 0
        self._last_used = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        # by server: a Cluster node's "host:port", or None for the target as a whole
        self._failing: dict[str | None, _Failing] = {}

    async def run(self, script: Script, key: str, *args: int) -> Any:
        self._in_flight += 1
        try:
            try:
                async with asyncio.timeout(self.target.timeout):
                    try:
                        result = await self._client.evalsha(script.sha, 1, key, *args)
                    except NoScriptError:
                        result = await self._client.eval(script.source, 1, key, *args)
            except _FAILURES as exc:
                reason = _reason(exc, self.target)
                self._failed(self._server_of(key), reason)
                raise LimitStoreError(f"{self.target.describe()}: {reason}") from None
        finally:
            self._in_flight -= 1
            self._touch()
        if self._failing:
            self._answered(self._server_of(key))
        return result

    def _server_of(self, key: str) -> str | None:
        """The Cluster node ``key``'s slot is on, as far as the client knows (None: a
        single server, or a Cluster whose slots it does not know)."""
        if not self.target.cluster:
            return None
        try:
            return str(self._client.get_node_from_key(key).name)
        except RedisClusterException:  # (SlotNotCoveredError)
            return None

    def _describe(self, server: str | None) -> str:
        described = self.target.describe()
        return described if server is None else f"{described} node {server}"

    def _failed(self, server: str | None, reason: str) -> None:
        now = self._clock()
        failing = self._failing.get(server)
        if failing is None:
            failing = self._failing[server] = _Failing(now, now + REPORT_EVERY)
            log.error(
                "%s failed: %s (the calls that use it fail or degrade until it answers)",
                self._describe(server),
                reason,
            )
        elif now >= failing.next_report:
            failing.next_report = now + REPORT_EVERY
            log.error(
                "%s still failing after %.0f s (%d calls): %s",
                self._describe(server),
                now - failing.since,
                failing.calls + 1,
                reason,
            )
        failing.calls += 1

    def _answered(self, server: str | None) -> None:
        """A call on ``server`` succeeded: it answers again, and so does the target."""
        for answering in {server, None}:
            failing = self._failing.pop(answering, None)
            if failing is not None:
                log.warning(
                    "%s answers again after %.1f s (%d calls failed meanwhile)",
                    self._describe(answering),
                    self._clock() - failing.since,
                    failing.calls,
                )

    # An unused client closes its connections after keepalive_timeout (as nginx closes
    # idle keepalive connections); the next call opens a new one.
    def _touch(self) -> None:
        self._last_used = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_later(
                self.target.keepalive_timeout, self._check_idle
            )

    def _check_idle(self) -> None:
        self._idle_timer = None
        keepalive = self.target.keepalive_timeout
        idle_for = self._loop.time() - self._last_used
        if not self._in_flight and idle_for >= keepalive:
            self._on_idle(self)
            return
        delay = keepalive if self._in_flight else keepalive - idle_for
        self._idle_timer = self._loop.call_later(delay, self._check_idle)

    async def aclose(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        await self._client.aclose()


class RedisStores:
    """This worker's Redis limits: a client per target, made on first use (``clock``
    times their failure logs)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: dict[RedisTarget, TargetClient] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def client(self, target: RedisTarget) -> TargetClient:
        found = self._clients.get(target)
        if found is None:
            found = self._clients[target] = TargetClient(target, self._forget, self._clock)
        return found

    def _forget(self, client: TargetClient) -> None:
        del self._clients[client.target]
        task = asyncio.get_running_loop().create_task(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def count(
        self, target: RedisTarget, key: str, limit: int, window: float, cost: int
    ) -> Quota:
        window_ms = max(1, math.ceil(window * 1000))
        allowed, used, left_ms = await self.client(target).run(COUNT, key, limit, window_ms, cost)
        return Quota(bool(allowed), limit, max(0, limit - int(used)), int(left_ms) / 1000)

    async def reserve(self, target: RedisTarget, key: str, rate: float, burst: int) -> float | None:
        if burst <= 0:
            return None
        interval = max(1, round(1_000_000 / rate)) if rate > 0 else 0
        wait = int(await self.client(target).run(RESERVE, key, interval, burst))
        return None if wait < 0 else wait / 1_000_000

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        await asyncio.gather(*(c.aclose() for c in clients), *self._closing)
