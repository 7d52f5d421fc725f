"""response-rewrite: change the upstream response (status, headers, body).

Conf ``{"status": int, "headers": {str: str}, "body": str, "filters": [{"regex": str,
"scope": "once" | "global", "replace": str}]}``, every field optional. On a route's
``ext-plugin-post-resp``:

* ``status`` > 0 becomes the response status;
* header ``X-Resp-A6-Runner: Python`` is always set, then each configured header;
* with ``filters``, the upstream body is read and each filter applied in order (``once``:
  the first match, ``global``: every match; ``replace`` may use ``$1``, ``${name}``); if
  any filter matched the result is the new body, else the body is left as it was;
* without ``filters``, a non-empty ``body`` becomes the new body.

A regex that does not compile, or a scope other than once/global, rejects the conf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from a6runner import BodyRewriter, ConfError, Needs, Plugin, Response
from a6runner.confs import Length, Range, ignore_unknown_fields


@ignore_unknown_fields
@dataclass(frozen=True, slots=True)
class Filter:
    regex: str
    scope: Literal["once", "global"] = "once"
    replace: str = ""


@ignore_unknown_fields
@dataclass(slots=True)
class ResponseRewriteConf:
    status: Annotated[int, Range(ge=0, le=999)] = 0
    headers: dict[Annotated[str, Length(min=1)], str] = field(default_factory=dict)
    body: bytes = b""
    filters: tuple[Filter, ...] = ()
    header_items: tuple[tuple[str, str], ...] = field(init=False)  # (no .items() per call)
    rewriter: BodyRewriter | None = field(init=False)  # the filters, compiled once, here

    def __post_init__(self) -> None:
        if 0 < self.status < 100:
            raise ConfError("status", "must be 0 (unchanged) or an integer in 100..999")
        self.header_items = tuple(self.headers.items())
        self.rewriter = (  # ConfError for a regex that does not compile
            BodyRewriter([(f.regex, f.scope, f.replace) for f in self.filters])
            if self.filters
            else None
        )


class ResponseRewrite(Plugin):
    name = "response-rewrite"
    conf_type = ResponseRewriteConf

    def needs(self, conf: ResponseRewriteConf) -> Needs:
        # With filters the upstream body is read: the runner fetches it before the filter
        # runs, and the filter stays a plain def (answered inline, no task).
        return Needs(resp_body=conf.rewriter is not None)

    def response_filter(self, conf: ResponseRewriteConf, resp: Response) -> None:
        if conf.status:
            resp.status = conf.status
        resp.headers.set("X-Resp-A6-Runner", "Python")
        for name, value in conf.header_items:
            resp.headers.set(name, value)
        if conf.rewriter is not None:
            new_body = conf.rewriter.rewrite(resp.get_body())
            if new_body is not None:  # None: no filter matched, keep the upstream body
                resp.set_body(new_body)
        elif conf.body:
            resp.set_body(conf.body)
