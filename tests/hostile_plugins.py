"""Plugins that misbehave on purpose, for the hardening tests (loaded with ``--plugins``)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from a6runner import Plugin, Request, Response


class BigReply(Plugin):
    """Answers a body of conf["size"] bytes (a reply the peer may not read)."""

    name = "big-reply"

    def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, b"r" * conf["size"])


class BodyLength(Plugin):
    """Reads the request body through ExtraInfo and answers its length."""

    name = "body-length"

    async def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, str(len(await req.body())))


class KeepsCall(Plugin):
    """Keeps the call (its frame, and with conf "body" the request body it reads) until
    the file named conf["release"] exists; answers the body's length, or the length of
    the header "x-big"."""

    name = "keeps-call"

    async def request_filter(self, conf: Any, req: Request) -> None:
        kept = await req.body() if conf["body"] else req.headers.get("x-big", "")
        while not Path(conf["release"]).exists():
            await asyncio.sleep(0.01)
        req.respond(200, str(len(kept)))


class AskVar(Plugin):
    """Asks APISIX for a var and answers it."""

    name = "ask-var"

    async def request_filter(self, conf: Any, req: Request) -> None:
        req.respond(200, (await req.var("remote_addr")) or "-")


class NeverReturns(Plugin):
    """An async filter that waits forever (until cancelled)."""

    name = "never-returns"

    async def request_filter(self, conf: Any, req: Request) -> None:
        await asyncio.get_running_loop().create_future()


class IgnoresCancellation(Plugin):
    """An async filter that swallows the cancellation at the call timeout and waits on."""

    name = "ignores-cancellation"

    async def request_filter(self, conf: Any, req: Request) -> None:
        while True:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                continue


class Raises(Plugin):
    """Raises conf["what"] from the sync request filter or the async response filter."""

    name = "raises"

    WHAT: dict[str, type[BaseException]] = {
        "SystemExit": SystemExit,
        "KeyboardInterrupt": KeyboardInterrupt,
        "GeneratorExit": GeneratorExit,
        "CancelledError": asyncio.CancelledError,
        "MemoryError": MemoryError,
    }

    def request_filter(self, conf: Any, req: Request) -> None:
        raise self.WHAT[conf["what"]]()

    async def response_filter(self, conf: Any, resp: Response) -> None:
        await asyncio.sleep(0)
        raise self.WHAT[conf["what"]]()


class ExitsLater(Plugin):
    """Leaves a callback (conf "callback") or a task (conf "task") behind that calls
    sys.exit() / raises KeyboardInterrupt, as a careless library might; the call itself
    succeeds."""

    name = "exits-later"

    def request_filter(self, conf: Any, req: Request) -> None:
        loop = asyncio.get_running_loop()
        if conf["how"] == "callback":
            loop.call_soon(sys.exit, 3)
        else:

            async def background() -> None:
                raise KeyboardInterrupt

            self.bomb = loop.create_task(background())  # kept: a task nobody awaits
        req.respond(200, "left a bomb behind")


class ExitsInParseConf(Plugin):
    name = "exits-in-parse-conf"

    def parse_conf(self, raw: bytes) -> Any:
        raise SystemExit(4)


class BlocksTheLoop(Plugin):
    """A sync filter that blocks the event loop (time.sleep) until the file named in its
    conf contains the given text: the test makes it wait for the watchdog's warning."""

    name = "blocks-the-loop"

    def request_filter(self, conf: Any, req: Request) -> None:
        log = Path(conf["until_file"])
        while conf["contains"] not in log.read_text(errors="replace"):
            time.sleep(0.01)
        req.respond(200, "unblocked")


class Pid(Plugin):
    """Answers the pid of the process serving the call (which worker)."""

    name = "pid"

    def request_filter(self, conf: Any, req: Request) -> None:
        import os

        req.respond(200, str(os.getpid()))
