"""Plugins for the ``prefetch`` scenarios, not bundled: start the runner under test with
``--plugins a6runner.bench.plugins``. Both read the same three vars and the request body
and make the same Rewrite; one declares what it reads (the runner fetches it all in one
round trip, and the filter is a plain ``def``), the other awaits each value in turn, as
a plugin for a runner without prefetch would (four round trips, and a task per call)."""

from __future__ import annotations

from typing import Any

from .._plugin import Plugin, Request

VARS = ("remote_addr", "http_x_user", "request_method")


def _rewrite(
    req: Request, addr: str | None, user: str | None, method: str | None, body: bytes
) -> None:
    req.headers.set("x-checked", f"{addr}|{user}|{method}|{len(body)}")


class BenchPrefetch(Plugin):
    name = "bench-prefetch"
    required_vars = VARS
    required_body = True

    def request_filter(self, conf: Any, req: Request) -> None:
        addr, user, method = (req.get_var(n) for n in VARS)
        _rewrite(req, addr, user, method, req.get_body())


class BenchOneAtATime(Plugin):
    name = "bench-one-at-a-time"

    async def request_filter(self, conf: Any, req: Request) -> None:
        addr = await req.var("remote_addr")
        user = await req.var("http_x_user")
        method = await req.var("request_method")
        _rewrite(req, addr, user, method, await req.body())
