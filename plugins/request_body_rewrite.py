"""request-body-rewrite: replace the request body sent to the upstream.

Conf ``{"new_body": str}``. An empty (or absent) ``new_body`` does nothing; otherwise
the runner answers a Rewrite whose body is ``new_body`` and APISIX sends that body
upstream instead of the client's.
"""

from __future__ import annotations

from dataclasses import dataclass

from a6runner import Plugin, Request
from a6runner.confs import ignore_unknown_fields


@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class RequestBodyRewriteConf:
    new_body: bytes = b""


class RequestBodyRewrite(Plugin):
    name = "request-body-rewrite"
    conf_type = RequestBodyRewriteConf

    def request_filter(self, conf: RequestBodyRewriteConf, req: Request) -> None:
        if conf.new_body:
            req.set_body(conf.new_body)
