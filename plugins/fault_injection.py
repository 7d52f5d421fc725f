"""fault-injection: answer a share of the requests with a fixed status and body.

Conf ``{"http_status": int, "body": str, "percentage": int}``. ``http_status`` is
required and at least 200 (``< 200`` rejects the conf); ``body`` may be empty;
``percentage`` (default 100) is in 0..100. Each request is answered with ``http_status``
and ``body`` with probability percentage/100, and goes upstream untouched otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated

from a6runner import Plugin, Request
from a6runner.confs import Range, ignore_unknown_fields


@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class FaultInjectionConf:
    http_status: Annotated[int, Range(ge=200, le=999)]
    body: bytes = b""
    percentage: Annotated[int, Range(ge=0, le=100)] = 100


class FaultInjection(Plugin):
    name = "fault-injection"
    conf_type = FaultInjectionConf

    def request_filter(self, conf: FaultInjectionConf, req: Request) -> None:
        # randrange(100) is 0..99: percentage 0 never fires, 100 always does.
        if random.randrange(100) < conf.percentage:
            req.respond(conf.http_status, conf.body)
