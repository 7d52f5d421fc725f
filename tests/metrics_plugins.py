"""Plugins for the observability tests (test_metrics.py, test_tracing.py)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from a6runner import Plugin, Request, Response


class Noop(Plugin):
    """Does nothing in either phase: the outcome is none."""

    name = "noop"

    def request_filter(self, conf: Any, req: Request) -> None:
        return None

    def response_filter(self, conf: Any, resp: Response) -> None:
        return None


class Boom(Plugin):
    name = "boom"

    def request_filter(self, conf: Any, req: Request) -> None:
        raise RuntimeError("boom")


class AsyncBoom(Plugin):
    name = "async-boom"

    async def request_filter(self, conf: Any, req: Request) -> None:
        await asyncio.sleep(0)
        raise ValueError("async boom")


class Nap(Plugin):
    """Takes 50 ms (blocking: the same for every event loop)."""

    name = "nap"

    def request_filter(self, conf: Any, req: Request) -> None:
        time.sleep(0.05)


class Asks(Plugin):
    """Declares a var and the body: the runner prefetches both."""

    name = "asks"
    required_vars = ("remote_addr",)
    required_body = True

    def request_filter(self, conf: Any, req: Request) -> None:
        req.get_var("remote_addr")
        req.get_body()


class WhichProcess(Plugin):
    name = "which-process"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, str(os.getpid()))


class TraceEcho(Plugin):
    """Answers the trace context it sees (request phase); puts it in a header (response)."""

    name = "trace-echo"

    def request_filter(self, conf: Any, req: Request) -> None:
        ctx = req.trace_context
        req.respond(200, "none" if ctx is None else f"{ctx.traceparent}|{ctx.tracestate}")

    def response_filter(self, conf: Any, resp: Response) -> None:
        ctx = resp.trace_context
        resp.headers.set("x-trace", "none" if ctx is None else ctx.trace_id)


class TraceEchoVars(TraceEcho):
    """The same, with the context's vars prefetched (the response phase's only source)."""

    name = "trace-echo-vars"
    required_vars = ("opentelemetry_context_traceparent", "http_traceparent", "http_tracestate")
