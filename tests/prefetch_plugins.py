"""Plugins that declare what they read through ExtraInfo (the prefetch), for
tests/test_prefetch.py; loaded in-process or with ``--plugins``."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from a6runner import Needs, Plugin, Request, Response


class ReadsThreeVarsAndBody(Plugin):
    """A plain def filter: declared vars and the body are there without waiting."""

    name = "reads-3-vars-and-body"
    required_vars = ("remote_addr", "http_x_user", "request_method")
    required_body = True

    def request_filter(self, conf: Any, req: Request) -> None:
        values = {n: req.get_var(n) for n in self.required_vars}
        body = len(req.get_body())
        req.respond(200, json.dumps({"vars": values, "body": body, "pid": os.getpid()}))


class AlsoReadsUser(Plugin):
    """Runs after another declaring plugin: its needs join the same round trip."""

    name = "also-reads-user"
    required_vars = ("http_x_user", "uri")

    def request_filter(self, conf: Any, req: Request) -> None:
        req.headers.set("x-seen", f"{req.get_var('http_x_user')} {req.get_var('uri')}")


class Stops(Plugin):
    name = "stops"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(403, "no")


class AwaitsFirst(Plugin):
    """An async filter before the declaring ones: the prefetch then runs in the task."""

    name = "awaits-first"

    async def request_filter(self, conf: Any, req: Request) -> None:
        await asyncio.sleep(0)
        req.headers.set("x-first", "1")


class AsyncReadsDeclared(Plugin):
    """An async filter reading what it declared: awaiting costs no further round trip."""

    name = "async-reads-declared"
    required_vars = ("remote_addr",)
    required_body = True

    async def request_filter(self, conf: Any, req: Request) -> None:
        addr = await req.var("remote_addr")
        body = await req.body()
        later = await req.var("not_declared")  # a second round trip
        req.respond(200, f"{addr} {len(body)} {later}")


class AsksThreeAtOnce(Plugin):
    """await req.vars(...): the three questions go out in one write."""

    name = "asks-three-at-once"

    async def request_filter(self, conf: Any, req: Request) -> None:
        values = await req.vars("a", "b", "c")
        again = await req.vars("c", "a")  # cached: no question
        req.respond(200, json.dumps([values, again]))


class UndeclaredGetVar(Plugin):
    name = "undeclared-get-var"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.get_var("remote_addr")


class ExplainsWhatIsMissing(Plugin):
    """Reads what nobody declared and answers the LookupErrors' messages (request: the
    client gets them as a JSON list; response: as the new body)."""

    name = "explains-what-is-missing"

    def request_filter(self, conf: Any, req: Request) -> None:
        messages = []
        for read in (lambda: req.get_var("remote_addr"), req.get_body):
            try:
                read()
            except LookupError as missing:
                messages.append(str(missing))
        req.respond(200, json.dumps(messages))

    def response_filter(self, conf: Any, resp: Response) -> None:
        try:
            resp.get_body()
        except LookupError as missing:
            resp.set_body(str(missing))


class NeedsFromConf(Plugin):
    """What it reads depends on the conf (as response-rewrite's filters do)."""

    name = "needs-from-conf"

    def needs(self, conf: Any) -> Needs:
        return Needs(tuple(conf.get("vars", ())))

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, json.dumps([req.get_var(n) for n in conf.get("vars", ())]))


class BrokenNeeds(Plugin):
    name = "broken-needs"

    def needs(self, conf: Any) -> Needs:
        raise RuntimeError("needs() is broken")


class ReadsRespBody(Plugin):
    """Response phase: the upstream body and a var, prefetched."""

    name = "reads-resp-body"
    required_vars = ("upstream_addr",)
    required_resp_body = True

    def response_filter(self, conf: Any, resp: Response) -> None:
        resp.set_body(resp.get_body().upper() + f" via {resp.get_var('upstream_addr')}".encode())
