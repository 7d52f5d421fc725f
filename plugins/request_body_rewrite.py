"""request-body-rewrite: replace the request body sent to the upstream.

Conf ``{"new_body": str}``. An empty (or absent) ``new_body`` does nothing; otherwise
the runner answers a Rewrite whose body is ``new_body`` and APISIX sends that body
upstream instead of the client's.
"""

from __future__ import annotations

from dataclasses import dataclass

from a6runner import ConfError, Plugin, Request


@dataclass(frozen=True, slots=True)
class RequestBodyRewriteConf:
    new_body: bytes


class RequestBodyRewrite(Plugin):
    name = "request-body-rewrite"

    def parse_conf(self, raw: bytes) -> RequestBodyRewriteConf:
        conf = self.parse_json_object(raw)
        new_body = conf.get("new_body", "")
        if not isinstance(new_body, str):
            raise ConfError("new_body", "must be a string", got=new_body)
        return RequestBodyRewriteConf(new_body.encode())

    def request_filter(self, conf: RequestBodyRewriteConf, req: Request) -> None:
        if conf.new_body:
            req.set_body(conf.new_body)
