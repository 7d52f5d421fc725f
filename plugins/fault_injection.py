"""fault-injection: answer a share of the requests with a fixed status and body.

Conf ``{"http_status": int, "body": str, "percentage": int}``. ``http_status`` is
required and at least 200 (``< 200`` rejects the conf); ``body`` may be empty;
``percentage`` (default 100) is in 0..100. Each request is answered with ``http_status``
and ``body`` with probability percentage/100, and goes upstream untouched otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeGuard

from a6runner import ConfError, Plugin, Request


@dataclass(frozen=True, slots=True)
class FaultInjectionConf:
    http_status: int
    body: bytes
    percentage: int


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class FaultInjection(Plugin):
    name = "fault-injection"

    def parse_conf(self, raw: bytes) -> FaultInjectionConf:
        conf = self.parse_json_object(raw)
        status = conf.get("http_status")
        if not _is_int(status) or not 200 <= status <= 999:
            raise ConfError("http_status", "must be an integer in 200..999", got=status)
        body = conf.get("body", "")
        if not isinstance(body, str):
            raise ConfError("body", "must be a string", got=body)
        percentage = conf.get("percentage", 100)
        if not _is_int(percentage) or not 0 <= percentage <= 100:
            raise ConfError("percentage", "must be an integer in 0..100", got=percentage)
        return FaultInjectionConf(status, body.encode(), percentage)

    def request_filter(self, conf: FaultInjectionConf, req: Request) -> None:
        # randrange(100) is 0..99: percentage 0 never fires, 100 always does.
        if random.randrange(100) < conf.percentage:
            req.respond(conf.http_status, conf.body)
