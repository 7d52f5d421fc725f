"""limit-req: hold requests to a rate, delaying (not rejecting) the excess.

Conf ``{"rate": float, "burst": int}`` (both default 0). ``rate`` is requests per second,
``burst`` how many may go at once. Every request that uses the conf takes a token from one
runner-wide bucket (shared by all connections and all worker processes). While
``burst >= 1`` no request is rejected: one that finds the bucket empty waits until its
token is due. ``burst`` 0 (for example conf ``{}``) answers every request 503 with no
body; ``rate`` 0 lets the first ``burst`` requests through and answers 503 afterwards.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from a6runner import ConfError, Plugin, Request


@dataclass(frozen=True, slots=True)
class LimitReqConf:
    rate: float
    burst: int


class LimitReq(Plugin):
    name = "limit-req"

    def parse_conf(self, raw: bytes) -> LimitReqConf:
        conf = self.parse_json_object(raw)
        rate = conf.get("rate", 0)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not (math.isfinite(rate) and rate >= 0)
        ):
            raise ConfError(f"rate must be a finite number >= 0, not {rate!r}")
        burst = conf.get("burst", 0)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ConfError(f"burst must be an integer >= 0, not {burst!r}")
        return LimitReqConf(float(rate), burst)

    # ``async def``: the runner runs the call as a task, so a request that sleeps here
    # does not hold up calls on other connections.
    async def request_filter(self, conf: LimitReqConf, req: Request) -> None:
        delay = await req.services.reserve(f"{self.name}/{req.conf_token}", conf.rate, conf.burst)
        if delay is None:
            req.response.status = 503
        elif delay > 0:
            # Event loop timers may fire a little early (uvloop counts whole milliseconds):
            # sleep until the token is really due.
            due = time.monotonic() + delay
            while (left := due - time.monotonic()) > 0:
                await asyncio.sleep(left + 0.001)
