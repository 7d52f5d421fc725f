"""limit-req: hold requests to a rate, delaying (not rejecting) the excess.

Conf ``{"rate": float, "burst": int}`` (both default 0). ``rate`` is requests per second,
``burst`` how many may go at once. Every request that uses the conf takes a token from one
bucket. While ``burst >= 1`` no request is rejected: one that finds the bucket empty waits
until its token is due. ``burst`` 0 (for example conf ``{}``) answers every request 503
with no body; ``rate`` 0 lets the first ``burst`` requests through and answers 503
afterwards.

Where the bucket lives: ``policy`` ``local`` (default) keeps one bucket per conf token in
the runner, shared by all connections and all worker processes. ``redis`` and
``redis-cluster`` (with APISIX's ``redis_*`` fields) keep it in Redis, checked and taken
in one atomic script, so every gateway node with the same conf shares one bucket. When
Redis cannot answer, the request passes with ``allow_degradation`` (default false) and
is answered 500 without it, as APISIX's limit-req does.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from a6runner import ConfError, LimitPolicy, LimitStoreError, Plugin, Request, conf_fingerprint


@dataclass(frozen=True, slots=True)
class LimitReqConf:
    rate: float
    burst: int
    policy: LimitPolicy
    shared_key: str | None  # the bucket's name in Redis; local buckets go by conf token
    allow_degradation: bool = False


_POLICY = LimitPolicy.conf_schema()


class LimitReq(Plugin):
    name = "limit-req"
    # parse_conf is written by hand (LimitPolicy.from_conf reads APISIX's redis_* fields):
    # the schema `a6-runner schema` prints says the same, as far as a schema can.
    conf_schema = {
        "type": "object",
        "properties": {
            "rate": {"type": "number", "minimum": 0, "default": 0},
            "burst": {"type": "integer", "minimum": 0, "default": 0},
            "allow_degradation": {"type": "boolean", "default": False},
            **_POLICY["properties"],
        },
        "allOf": _POLICY["allOf"],
    }

    def parse_conf(self, raw: bytes) -> LimitReqConf:
        conf = self.parse_json_object(raw)
        rate = conf.get("rate", 0)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not (math.isfinite(rate) and rate >= 0)
        ):
            raise ConfError("rate must be a finite number >= 0")
        burst = conf.get("burst", 0)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ConfError("burst must be an integer >= 0")
        allow_degradation = conf.get("allow_degradation", False)
        if not isinstance(allow_degradation, bool):
            raise ConfError("allow_degradation must be true or false")
        policy = LimitPolicy.from_conf(conf)
        shared_key = None if policy.redis is None else f"{self.name}:{conf_fingerprint(conf)}"
        return LimitReqConf(float(rate), burst, policy, shared_key, allow_degradation)

    # ``async def``: the runner runs the call as a task, so a request that sleeps here
    # does not hold up calls on other connections.
    async def request_filter(self, conf: LimitReqConf, req: Request) -> None:
        key = conf.shared_key or f"{self.name}/{req.conf_token}"
        try:
            delay = await req.services.reserve(key, conf.rate, conf.burst, conf.policy)
        except LimitStoreError:  # logged by the runner's Redis client
            if not conf.allow_degradation:
                req.response.status = 500
            return
        if delay is None:
            req.response.status = 503
        elif delay > 0:
            # Event loop timers may fire a little early (uvloop counts whole milliseconds):
            # sleep until the token is really due.
            due = time.monotonic() + delay
            while (left := due - time.monotonic()) > 0:
                await asyncio.sleep(left + 0.001)
