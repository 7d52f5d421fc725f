"""Plugins used by the runner's own tests: each exercises one part of the call semantics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, ClassVar

from a6runner import ConfError, Plugin, Request, Response


class EchoInput(Plugin):
    """Answers with what it saw of the request, as JSON."""

    name = "echo-input"

    def request_filter(self, conf: Any, req: Request) -> None:
        seen = {
            "id": req.id,
            "method": req.method,
            "path": req.path,
            "args": req.args.items(),
            "headers": req.headers.items(),
            "src_ip": str(req.src_ip) if req.src_ip is not None else None,
            "conf_token": req.conf_token,
            "conf": conf,
        }
        req.respond(200, json.dumps(seen))


class Stopper(Plugin):
    """conf: {"status": int, "headers": [[name, value], ...], "body": str}"""

    name = "stopper"

    def parse_conf(self, raw: bytes) -> Any:
        conf = super().parse_conf(raw)
        if not isinstance(conf, dict):
            raise ConfError("conf must be an object")
        return conf

    def request_filter(self, conf: Any, req: Request) -> None:
        if "status" in conf:
            req.response.status = conf["status"]
        for name, value in conf.get("headers", []):
            req.response.headers.add(name, value)
        if conf.get("body"):
            req.response.body = conf["body"].encode()


class Rewriter(Plugin):
    """conf: {"path", "set_headers", "add_headers", "del_headers", "set_args", "add_args",
    "del_args", "resp_headers", "body"} - each optional."""

    name = "rewriter"

    def request_filter(self, conf: Any, req: Request) -> None:
        if "path" in conf:
            req.path = conf["path"]
        for name, value in conf.get("set_headers", {}).items():
            req.headers.set(name, value)
        for name, value in conf.get("add_headers", []):
            req.headers.add(name, value)
        for name in conf.get("del_headers", []):
            req.headers.delete(name)
        for name, value in conf.get("set_args", {}).items():
            req.args.set(name, value)
        for name, value in conf.get("add_args", []):
            req.args.add(name, value)
        for name in conf.get("del_args", []):
            req.args.delete(name)
        for name, value in conf.get("resp_headers", []):
            req.resp_headers.add(name, value)
        if "body" in conf:
            req.set_body(conf["body"])


class AskVars(Plugin):
    """Fetches the vars named in conf["vars"] (twice, to check the cache) and answers them."""

    name = "ask-vars"

    async def request_filter(self, conf: Any, req: Request) -> None:
        values = {name: await req.var(name) for name in conf["vars"]}
        again = {name: await req.var(name) for name in conf["vars"]}
        assert values == again
        req.respond(200, json.dumps(values))


class AskBody(Plugin):
    """Answers with the length and sha256 of the request body."""

    name = "ask-body"

    async def request_filter(self, conf: Any, req: Request) -> None:
        body = await req.body()
        assert (await req.body()) is body
        req.respond(200, json.dumps({"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}))


class BigStop(Plugin):
    """Answers a body of conf["size"] bytes."""

    name = "big-stop"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, b"x" * conf["size"])


class Boom(Plugin):
    name = "boom"

    def request_filter(self, conf: Any, req: Request) -> None:
        raise RuntimeError("plugin bug")

    async def response_filter(self, conf: Any, resp: Response) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("plugin bug in an async filter")


class BadConf(Plugin):
    """Rejects every conf."""

    name = "bad-conf"

    def parse_conf(self, raw: bytes) -> Any:
        raise ConfError("this plugin rejects every conf")

    def request_filter(self, conf: Any, req: Request) -> None:
        raise AssertionError("never called: its conf is always rejected")


class Sleepy(Plugin):
    """Sleeps conf["seconds"], then answers conf["body"] (with ``--call-timeout`` below
    the sleep: a call that always times out)."""

    name = "sleepy"

    async def request_filter(self, conf: Any, req: Request) -> None:
        await asyncio.sleep(conf["seconds"])
        req.respond(200, conf.get("body", "slept"))


class Hold(Plugin):
    """Holds the call until the test releases it (see ``Holding``): first writes the pid of
    the serving process to conf["entered"], then waits for the file conf["release"].
    conf["block"] true: a plain filter that holds its whole event loop (a busy worker);
    else the call waits in a task and the loop goes on. Gives up after HOLD_LIMIT seconds
    (a failing test must not hang), then answers conf["body"] either way."""

    name = "hold"

    def request_filter(self, conf: Any, req: Request) -> Awaitable[None] | None:
        entered = Path(conf["entered"])
        scratch = entered.with_suffix(".writing")
        scratch.write_text(str(os.getpid()))
        os.replace(scratch, entered)  # the test never reads a half-written pid
        if not conf.get("block"):
            return self._wait(conf, req)
        deadline = time.monotonic() + HOLD_LIMIT
        while not os.path.exists(conf["release"]) and time.monotonic() < deadline:
            time.sleep(0.005)
        req.respond(200, conf.get("body", "released"))
        return None

    async def _wait(self, conf: Any, req: Request) -> None:
        deadline = time.monotonic() + HOLD_LIMIT
        while not os.path.exists(conf["release"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        req.respond(200, conf.get("body", "released"))


HOLD_LIMIT = 60.0


class Holding:
    """The test's side of one ``hold`` call: its conf, when it entered, its release."""

    def __init__(self, folder: Path, *, block: bool = False, body: str = "released") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._entered = folder / f"hold-{id(self)}.entered"
        self._release = folder / f"hold-{id(self)}.release"
        self.conf = {
            "entered": str(self._entered),
            "release": str(self._release),
            "block": block,
            "body": body,
        }

    def wait_entered(self, timeout: float = 30.0) -> int:
        """Wait until the call is held in the runner; the pid of the process holding it."""
        deadline = time.monotonic() + timeout
        while not self._entered.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the hold plugin was never called")
            time.sleep(0.005)
        return int(self._entered.read_text())

    def release(self) -> None:
        self._release.touch()


class CountParses(Plugin):
    """Counts parse_conf calls (class-wide) and answers the count."""

    name = "count-parses"
    parses: ClassVar[int] = 0

    def parse_conf(self, raw: bytes) -> Any:
        type(self).parses += 1
        return type(self).parses

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, str(type(self).parses))


class RespMod(Plugin):
    """Response filter: conf {"status", "set_headers", "del_headers", "body", "read_body"}."""

    name = "resp-mod"

    async def response_filter(self, conf: Any, resp: Response) -> None:
        if conf.get("read_body"):
            body = await resp.body()
            resp.set_body(body.upper())
        if "status" in conf:
            resp.status = conf["status"]
        for name, value in conf.get("set_headers", {}).items():
            resp.headers.set(name, value)
        for name in conf.get("del_headers", []):
            resp.headers.delete(name)
        if "body" in conf:
            resp.set_body(conf["body"])


class RespSetHeader(Plugin):
    """Plain-def response filter that sets one header (fast path)."""

    name = "resp-set-header"

    def response_filter(self, conf: Any, resp: Response) -> None:
        resp.headers.set(conf["name"], conf["value"])


class Marker(Plugin):
    """Adds a request header naming itself: shows which filters ran, in order. Returns a
    value, as a careless filter might: the runner ignores what is not awaitable."""

    name = "marker"

    def request_filter(self, conf: Any, req: Request) -> Any:  # type: ignore[override]
        req.headers.add("x-ran", conf["mark"])
        return True


class WhichProcess(Plugin):
    """Answers the pid of the process that served the call (for --workers tests)."""

    name = "which-process"

    def request_filter(self, conf: Any, req: Request) -> None:
        import os

        req.respond(200, str(os.getpid()))


class FiltersThatCannotBeRead(Plugin):
    """Reading its filter raises: the runner cannot build the chain of a conf naming it."""

    name = "filters-that-cannot-be-read"

    @property
    def request_filter(self) -> Any:  # type: ignore[override]
        raise RuntimeError("no filter here")


class Fatal(BaseException):
    """Not an Exception: slips past every ``except Exception`` of a call."""


class RaisesBaseException(Plugin):
    name = "raises-base-exception"

    async def request_filter(self, conf: Any, req: Request) -> None:
        raise Fatal("not an Exception")


class IgnoresCancellation(Plugin):
    """Asks a var; if the call is cancelled meanwhile (APISIX went away) it carries on and
    asks again, as a careless plugin swallowing CancelledError would."""

    name = "ignores-cancellation"

    async def request_filter(self, conf: Any, req: Request) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await req.var("first")
        await req.var("second")


class AsyncMarker(Plugin):
    """Like marker, after awaiting: the rest of the chain then runs in the call's task."""

    name = "async-marker"

    async def request_filter(self, conf: Any, req: Request) -> None:
        await asyncio.sleep(0)
        req.headers.add("x-ran", conf["mark"])


class RespIdentity(Plugin):
    """Answers what a response filter knows of its call: id, conf token, services."""

    name = "resp-identity"

    def response_filter(self, conf: Any, resp: Response) -> None:
        seen = {"id": resp.id, "conf_token": resp.conf_token, "status": resp.status}
        seen["has_services"] = resp.services is not None
        resp.set_body(json.dumps(seen))


class DrivesVarByHand(Plugin):
    """A plain filter that runs ``req.var()`` by hand instead of awaiting it."""

    name = "drives-var-by-hand"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.var("remote_addr").send(None)


ALL = [
    EchoInput,
    Stopper,
    Rewriter,
    AskVars,
    AskBody,
    BigStop,
    Boom,
    BadConf,
    Hold,
    CountParses,
    RespMod,
    RespSetHeader,
    Marker,
    WhichProcess,
    FiltersThatCannotBeRead,
    RaisesBaseException,
    IgnoresCancellation,
    AsyncMarker,
    RespIdentity,
    DrivesVarByHand,
]
