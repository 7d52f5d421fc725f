"""say: answer the request from the runner, without calling the upstream.

Conf ``{"body": str}``. An empty (or absent) body does nothing and the request goes
upstream. Otherwise the runner answers the client with that body and the header
``X-Resp-A6-Runner: Python``; the status is left unset, which APISIX sends as 200.
"""

from __future__ import annotations

from dataclasses import dataclass

from a6runner import Plugin, Request
from a6runner.confs import ignore_unknown_fields


# A typed conf: the runner decodes the JSON conf into it (a bytes field takes a JSON string,
# as UTF-8) and rejects what does not fit. Keys it does not declare are ignored, as the Go
# runner's say does.
@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class SayConf:
    body: bytes = b""


class Say(Plugin):
    name = "say"
    conf_type = SayConf

    # A plain ``def``: nothing to await, so the runner answers inline (the fast path).
    def request_filter(self, conf: SayConf, req: Request) -> None:
        if not conf.body:
            return
        # Writing the response (a header, the body) stops the chain: APISIX answers
        # the client with it and does not call the upstream.
        req.response.headers.set("X-Resp-A6-Runner", "Python")
        req.response.body = conf.body
