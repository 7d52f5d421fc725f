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

from dataclasses import dataclass

from a6runner import BodyRewriter, ConfError, Needs, Plugin, Response


@dataclass(frozen=True, slots=True)
class ResponseRewriteConf:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    filters: BodyRewriter | None  # compiled once, here


def _parse_filters(filters: object) -> BodyRewriter | None:
    if not isinstance(filters, list):
        raise ConfError("filters", "must be a list", got=filters)
    if not filters:
        return None
    compiled = []
    for i, f in enumerate(filters):
        if not isinstance(f, dict) or "regex" not in f:
            raise ConfError(f"filters[{i}]", "must be an object with a regex", got=f)
        compiled.append((f["regex"], f.get("scope", "once"), f.get("replace", "")))
    return BodyRewriter(compiled)  # ConfError for a bad regex or scope


class ResponseRewrite(Plugin):
    name = "response-rewrite"

    def parse_conf(self, raw: bytes) -> ResponseRewriteConf:
        conf = self.parse_json_object(raw)
        status = conf.get("status", 0)
        if (
            isinstance(status, bool)
            or not isinstance(status, int)
            or not (status == 0 or 100 <= status <= 999)
        ):
            raise ConfError("status", "must be 0 (unchanged) or an integer in 100..999", got=status)
        headers = conf.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfError("headers", "must map header names to string values", got=headers)
        body = conf.get("body", "")
        if not isinstance(body, str):
            raise ConfError("body", "must be a string", got=body)
        return ResponseRewriteConf(
            status, tuple(headers.items()), body.encode(), _parse_filters(conf.get("filters", []))
        )

    def needs(self, conf: ResponseRewriteConf) -> Needs:
        # With filters the upstream body is read: the runner fetches it before the filter
        # runs, and the filter stays a plain def (answered inline, no task).
        return Needs(resp_body=conf.filters is not None)

    def response_filter(self, conf: ResponseRewriteConf, resp: Response) -> None:
        if conf.status:
            resp.status = conf.status
        resp.headers.set("X-Resp-A6-Runner", "Python")
        for name, value in conf.headers:
            resp.headers.set(name, value)
        if conf.filters is not None:
            new_body = conf.filters.rewrite(resp.get_body())
            if new_body is not None:  # None: no filter matched, keep the upstream body
                resp.set_body(new_body)
        elif conf.body:
            resp.set_body(conf.body)
